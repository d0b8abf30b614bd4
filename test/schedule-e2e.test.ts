/**
 * A worker whose schedule ends mid-job, with real Blender and a real server. The worker
 * reads a clock the test sets, so the schedule ends and begins when the test says.
 * `schedule_stop = "finish"` renders the frame it has and takes no more; `"now"` hands it
 * back at once (no attempt counted). Either way the job completes once the worker wakes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { JobDetail, Worker } from '../src/protocol/index.ts';
import { getJson } from '../testkit/api.ts';
import { startTestFarm, submitBlend, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { until } from './helpers/processes.ts';
import { makeTestScene } from '../testkit/scenes.ts';
import { readFileSync } from 'node:fs';

/** Tuesday 8 December 2026, local time. */
const tuesday = (hours: number, minutes = 0) => new Date(2026, 11, 8, hours, minutes);
const SCHEDULE = 'Mon-Sun 09:00-17:00';

describe('a worker whose schedule ends mid-job (real Blender)', () => {
  let farm: TestFarm;
  let slowScene: Blob;

  before(async () => {
    farm = await startTestFarm();
    // Slow enough (a second or more a frame) that the schedule can end while one renders.
    slowScene = new Blob([readFileSync(await makeTestScene({ frames: '1-4', width: 96, height: 72, samples: 256 }))]);
  });

  after(async () => {
    await farm?.close();
  });

  const api = <T>(path: string) => getJson<T>(farm.server.httpUrl, farm.server.tokens.user!, path);
  const workerNamed = async (name: string) => (await api<Worker[]>('/api/workers')).find((w) => w.name === name)!;

  async function submitAndWaitForRendering(name: string, fields: Record<string, string>): Promise<string> {
    const submitted = await submitBlend(farm.server.httpUrl, slowScene, { frames: '1-4', order: 'sequential', ...fields });
    assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    await until(async () => (await workerNamed(name))?.current?.jobId === submitted.body.id, 60_000, `${name} rendering a frame`);
    return submitted.body.id as string;
  }

  it('finish: the frame under way is rendered, then nothing more until the schedule begins again', async () => {
    let now = tuesday(16, 0);
    const worker = farm.addWorker('night-owl', { schedule: SCHEDULE, schedule_stop: 'finish' }, () => now);
    const jobId = await submitAndWaitForRendering('night-owl', {});

    now = tuesday(17, 30);
    worker.checkSchedule();
    await until(async () => (await workerNamed('night-owl')).current === null, 60_000, 'the frame under way to finish');
    const asleep = await workerNamed('night-owl');
    assert.equal(asleep.asleepUntil, new Date(2026, 11, 9, 9, 0).toISOString(), 'asleep until 09:00 tomorrow');
    const whenAsleep = (await api<JobDetail>(`/api/jobs/${jobId}`)).counts;
    assert.ok(whenAsleep.done >= 1, 'the frame under way was finished and kept');
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const later = await api<JobDetail>(`/api/jobs/${jobId}`);
    assert.deepEqual(later.counts, whenAsleep, 'no frame taken while asleep');
    assert.ok(later.counts.queued >= 1 && later.counts.rendering === 0 && later.counts.failed === 0, JSON.stringify(later.counts));

    // The next morning, as far as the schedule is concerned.
    now = new Date(2026, 11, 9, 9, 0);
    worker.checkSchedule();
    const done = await waitForJob(farm.server, jobId, ['completed', 'failed'], 120_000);
    assert.equal(done.state, 'completed', done.error ?? '');
    assert.equal((await workerNamed('night-owl')).asleepUntil, null);
    await worker.shutdown();
  });

  it('now: the frame under way goes back to the queue at once, costing no attempt', async () => {
    let now = tuesday(16, 0);
    const worker = farm.addWorker('early-bird', { schedule: SCHEDULE, schedule_stop: 'now' }, () => now);
    const jobId = await submitAndWaitForRendering('early-bird', {});
    const handedOut = (await workerNamed('early-bird')).current!.frame;

    now = tuesday(17, 0);
    worker.checkSchedule();
    await until(async () => (await workerNamed('early-bird')).current === null, 10_000, 'the frame to be handed back');
    const job = await api<JobDetail>(`/api/jobs/${jobId}`);
    const frame = job.frameList.find((f) => f.number === handedOut)!;
    assert.equal(frame.state, 'queued', 'handed back, not finished');
    assert.equal(frame.attempts, 0, 'no attempt counted');
    assert.equal(job.counts.failed, 0);
    assert.match((await workerNamed('early-bird')).asleepUntil ?? '', /^2026-12-09T/);

    now = new Date(2026, 11, 9, 9, 0);
    worker.checkSchedule();
    assert.equal((await waitForJob(farm.server, jobId, ['completed', 'failed'], 120_000)).state, 'completed');
    await worker.shutdown();
  });
});
