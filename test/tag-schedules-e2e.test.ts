/**
 * Schedules per tag end to end, with a real server, a real worker and real Blender: a
 * schedule set on the server for a tag puts a connected worker carrying it to sleep (no new
 * frames) and clearing it wakes it, without reconnecting. While every worker sleeps, a new
 * job is still probed at once, so its settings and problems show before anyone wakes. The
 * worker reads its schedules at a time the test sets: Tuesday 8 December 2026, 12:00.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { apiPath, CLIENT_HEADER, type Job, type JobDetail, type Worker } from '../src/protocol/index.ts';
import { getJson } from '../testkit/api.ts';
import { startTestFarm, submitBlend, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { makeTestScene } from '../testkit/scenes.ts';
import { until } from './helpers/processes.ts';

const NOON = new Date(2026, 11, 8, 12, 0);
/** Room-2 renders in the evening only: at noon its workers sleep until 18:00. */
const EVENINGS = 'Mon-Sun 18:00-23:00';

describe('a schedule set on the server for a tag (real Blender)', () => {
  let farm: TestFarm;
  let slowScene: Blob;

  before(async () => {
    farm = await startTestFarm();
    farm.addWorker('lab-1', { tags: ['room-2'] }, () => NOON);
    // Slow enough (a second or more a frame) that the schedule can begin while one renders.
    slowScene = new Blob([readFileSync(await makeTestScene({ frames: '1-4', width: 96, height: 72, samples: 256 }))]);
    await until(async () => (await lab()) !== undefined, 30_000, 'lab-1 connected');
  });
  after(() => farm?.close());

  const api = <T>(path: string) => getJson<T>(farm.server.httpUrl, farm.server.tokens.user!, path);
  const lab = async () => (await api<Worker[]>(apiPath('listWorkers'))).find((w) => w.name === 'lab-1' && w.state !== 'offline');
  const setSchedule = async (tag: string, body: { schedule: string; stop?: 'finish' | 'now' } | null) => {
    const path = body ? apiPath('setTagSchedule', { tag }) : apiPath('clearTagSchedule', { tag });
    const response = await fetch(`${farm.server.httpUrl}${path}`, {
      method: body ? 'PUT' : 'DELETE',
      headers: { [CLIENT_HEADER]: 'test', ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    assert.equal(response.status, body ? 200 : 204, await response.text());
  };
  const counts = async (jobId: string) => (await api<JobDetail>(apiPath('getJob', { id: jobId }))).counts;

  it('puts the worker to sleep (its frame under way finishes, no new one starts) and clearing it wakes it', async () => {
    const submitted = await submitBlend(farm.server.httpUrl, slowScene, { frames: '1-4', order: 'sequential' });
    assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    const jobId = submitted.body.id as string;
    await until(async () => (await lab())?.current?.jobId === jobId, 60_000, 'lab-1 rendering a frame');

    await setSchedule('room-2', { schedule: EVENINGS });
    await until(async () => (await lab())?.asleep != null, 10_000, 'lab-1 asleep');
    assert.deepEqual((await lab())!.asleep, { until: new Date(2026, 11, 8, 18, 0).toISOString(), own: false, tags: ['room-2'] });
    await until(async () => (await lab())!.current === null, 60_000, 'the frame under way to finish');
    const whenAsleep = await counts(jobId);
    assert.ok(whenAsleep.done >= 1, `the frame under way was finished and kept: ${JSON.stringify(whenAsleep)}`);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.deepEqual(await counts(jobId), whenAsleep, 'no frame taken while asleep');
    assert.equal(whenAsleep.rendering + whenAsleep.failed, 0);
    assert.match((await api<Job>(apiPath('getJob', { id: jobId }))).notice ?? '', /every worker that can render this job is asleep/);

    await setSchedule('room-2', null);
    const done = await waitForJob(farm.server, jobId, ['completed', 'failed'], 120_000);
    assert.equal(done.state, 'completed', done.error ?? '');
    assert.equal((await lab())!.asleep, null);
  });

  it("with stop \"now\", the tag's schedule hands the frame under way back at once, costing no attempt", async () => {
    const submitted = await submitBlend(farm.server.httpUrl, slowScene, { frames: '1-4', order: 'sequential' });
    const jobId = submitted.body.id as string;
    await until(async () => (await lab())?.current?.jobId === jobId, 60_000, 'lab-1 rendering a frame');
    const handedOut = (await lab())!.current!.frame;

    await setSchedule('room-2', { schedule: EVENINGS, stop: 'now' });
    await until(async () => (await lab())!.current === null, 10_000, 'the frame to be handed back');
    const frame = (await api<JobDetail>(apiPath('getJob', { id: jobId }))).frameList.find((f) => f.number === handedOut)!;
    assert.deepEqual([frame.state, frame.attempts], ['queued', 0], 'handed back, not failed');

    await setSchedule('room-2', null);
    assert.equal((await waitForJob(farm.server, jobId, ['completed', 'failed'], 120_000)).state, 'completed');
  });

  it('while every worker sleeps, a new job is probed at once: its settings and problems show before anyone wakes', async () => {
    await setSchedule('room-2', { schedule: EVENINGS });
    await until(async () => (await lab())?.asleep != null, 10_000, 'lab-1 asleep');

    const scene = new Blob([readFileSync(await makeTestScene({ frames: '1-3', width: 40, height: 30, samples: 2 }))]);
    const queued = await submitBlend(farm.server.httpUrl, scene, { frames: '1-3' });
    const job = await waitForJob(farm.server, queued.body.id, ['queued', 'failed'], 60_000);
    assert.equal(job.state, 'queued', job.error ?? '');
    assert.deepEqual([job.scene?.resolutionX, job.scene?.resolutionY, job.frames], [40, 30, { start: 1, end: 3, step: 1 }], 'read from the .blend by the sleeping worker');
    assert.match(job.notice ?? '', /asleep/);

    // Debian's Blender has no denoiser: the preflight's error shows at once, not at 18:00.
    const denoised = new Blob([readFileSync(await makeTestScene({ frames: '1-2', width: 40, height: 30, samples: 2, denoise: true }))]);
    const failing = await submitBlend(farm.server.httpUrl, denoised, {});
    const failed = await waitForJob(farm.server, failing.body.id, ['queued', 'failed'], 60_000);
    assert.equal(failed.state, 'failed');
    assert.ok(failed.scene?.problems.some((problem) => problem.code === 'DENOISER_UNAVAILABLE'), JSON.stringify(failed.scene?.problems));

    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal((await counts(job.id)).done + (await counts(job.id)).rendering, 0, 'probed, but not rendered while asleep');
    assert.equal((await lab())!.asleep?.until, new Date(2026, 11, 8, 18, 0).toISOString(), 'still asleep after probing');

    await setSchedule('room-2', null);
    assert.equal((await waitForJob(farm.server, job.id, ['completed', 'failed'], 120_000)).state, 'completed');
  });
});
