/**
 * Worker tags end to end: two real workers (real Blender), one tagged `gpu`; a job that
 * requires `gpu` is rendered only by that one, and a job requiring a tag nobody has says
 * so on the job instead of waiting in silence.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Job, JobDetail, Worker } from '../src/protocol/index.ts';
import { getJson, postJson } from '../testkit/api.ts';
import { startTestFarm, submitBlend, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { until } from './helpers/processes.ts';
import { makeTestScene } from '../testkit/scenes.ts';

describe('worker tags (real Blender)', () => {
  let farm: TestFarm;
  let scene: Blob;

  before(async () => {
    farm = await startTestFarm();
    farm.addWorker('gpu-box', { tags: ['gpu'] });
    farm.addWorker('plain');
    scene = new Blob([readFileSync(await makeTestScene({ frames: '1-4', width: 48, height: 36, samples: 4 }))]);
    await until(async () => (await api<Worker[]>('/api/workers')).filter((w) => w.state !== 'offline').length === 2, 30_000, 'both workers connected');
  });

  after(async () => {
    await farm?.close();
  });

  const api = <T>(path: string) => getJson<T>(farm.server.httpUrl, farm.server.tokens.user!, path);

  it('a job requiring a tag is rendered only by the worker that has it', async () => {
    const workers = await api<Worker[]>('/api/workers');
    const gpuBox = workers.find((w) => w.name === 'gpu-box')!;
    assert.deepEqual(gpuBox.tags, ['gpu']);
    assert.deepEqual(workers.find((w) => w.name === 'plain')!.tags, []);

    const submitted = await submitBlend(farm.server.httpUrl, scene, { frames: '1-4', requiredTags: 'GPU' });
    assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    assert.deepEqual(submitted.body.requiredTags, ['gpu'], 'tags are kept in lower case');
    const done = await waitForJob(farm.server, submitted.body.id, ['completed', 'failed'], 120_000);
    assert.equal(done.state, 'completed', done.error ?? '');
    const frames = (await api<JobDetail>(`/api/jobs/${done.id}`)).frameList;
    assert.deepEqual(new Set(frames.map((f) => f.workerId)), new Set([gpuBox.id]));
  });

  it('a job requiring a tag no connected worker has says so, and waits', async () => {
    const submitted = await submitBlend(farm.server.httpUrl, scene, { frames: '1-2', requiredTags: 'room-9' });
    assert.equal(submitted.status, 201);
    let job: Job | undefined;
    await until(async () => (job = await api<Job>(`/api/jobs/${submitted.body.id}`)).state === 'queued', 30_000, 'the scene read');
    assert.match(job!.notice ?? '', /needs a worker with the tags room-9, and no connected worker has them all/);
    assert.equal(job!.counts.rendering + job!.counts.done, 0);
    await postJson(farm.server.httpUrl, farm.server.tokens.user!, `/api/jobs/${submitted.body.id}/cancel`);
  });
});
