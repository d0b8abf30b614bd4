/**
 * Frame order through the real server: a job submitted without `order` hands out its
 * frames first, last, middle, then filling in; `order=sequential` in frame order. The
 * worker is scripted, so the test sees every `render` message in the order it is sent,
 * and the video is still encoded from the frames in frame order.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Job, RenderAssignment } from '../src/protocol/index.ts';
import { until } from './helpers/processes.ts';
import { apiHeaders, fakeBlend, getJson, postJson, submitJob } from '../testkit/api.ts';
import { TINY_PNG } from '../testkit/fakes.ts';
import { startTestFarm, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { ScriptedWorker } from './helpers/scripted-worker.ts';

describe('frame order through the farm', () => {
  let farm: TestFarm;
  let worker: ScriptedWorker;

  before(async () => {
    farm = await startTestFarm();
    worker = await ScriptedWorker.connect(farm);
  });

  after(async () => {
    worker?.close();
    await farm?.close();
  });

  /** The scene is read and the job waits for workers (polled: the change may already have happened). */
  const untilQueued = (jobId: string) =>
    until(async () => (await getJson<Job>(farm.server.httpUrl, farm.server.tokens.user!, `/api/jobs/${jobId}`)).state === 'queued', 10_000, `job ${jobId} queued`);

  async function patchJson<T>(path: string, body: unknown): Promise<T> {
    const response = await fetch(`${farm.server.httpUrl}${path}`, {
      method: 'PATCH',
      headers: { ...apiHeaders(farm.server.tokens.user!), 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    assert.equal(response.status, 200, await response.clone().text());
    return (await response.json()) as T;
  }

  /** Renders every frame of the job with one worker and returns the frames in the order they were handed out. */
  async function renderAll(jobId: string, frames: number): Promise<number[]> {
    const order: number[] = [];
    const before = worker.received.filter((m) => m.type === 'render').length;
    for (let i = 0; i < frames; i++) {
      worker.send({ type: 'ready' });
      const assignment = (await worker.next('render', before + i)) as RenderAssignment;
      assert.equal(assignment.jobId, jobId);
      order.push(assignment.frame);
      const result = await worker.upload(`/api/worker/jobs/${jobId}/frames/${assignment.frame}`, TINY_PNG);
      assert.deepEqual(result.body, { accepted: true });
    }
    return order;
  }

  it('interleaves by default: first, last, middle, then filling in; the video still has every frame', async () => {
    const job = await submitJob(farm.server.httpUrl, farm.server.tokens.user!, fakeBlend(), { frames: '1-9', tiles: 'off' });
    assert.equal(job.order, 'interleaved');
    await worker.next('probe');
    assert.deepEqual(await renderAll(job.id, 9), [1, 9, 5, 3, 7, 2, 4, 6, 8]);
    const done = await waitForJob(farm.server, job.id, ['completed', 'failed'], 60_000);
    assert.equal(done.state, 'completed', done.error ?? '');
    assert.equal(done.videoReady, true);
    assert.ok(existsSync(farm.server.dataDir.video(job.id)), 'the video was encoded');
  });

  it('maxWorkers: one worker at a time until the limit is lifted (PATCH)', async () => {
    const second = await ScriptedWorker.connect(farm, { name: 'second' });
    try {
      const job = await submitJob(farm.server.httpUrl, farm.server.tokens.user!, fakeBlend(), { frames: '1-3', tiles: 'off', maxWorkers: '1' });
      assert.equal(job.maxWorkers, 1);
      await untilQueued(job.id); // probed by either worker
      const rendersOf = (w: ScriptedWorker) => w.received.filter((m) => m.type === 'render' && m.jobId === job.id).length;
      worker.send({ type: 'ready' });
      second.send({ type: 'ready' });
      await until(() => rendersOf(worker) + rendersOf(second) === 1, 10_000, 'one frame handed out');
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(rendersOf(worker) + rendersOf(second), 1, 'the second idle worker gets nothing of the job');
      const lifted = await patchJson<Job>(`/api/jobs/${job.id}`, { maxWorkers: null });
      assert.equal(lifted.maxWorkers, null);
      await until(() => rendersOf(worker) + rendersOf(second) === 2, 10_000, 'the other worker let in');
      assert.ok(rendersOf(worker) === 1 && rendersOf(second) === 1);
      await postJson(farm.server.httpUrl, farm.server.tokens.user!, `/api/jobs/${job.id}/cancel`);
    } finally {
      second.close();
    }
  });

  it('order=sequential renders in frame order', async () => {
    const job = await submitJob(farm.server.httpUrl, farm.server.tokens.user!, fakeBlend(), { frames: '1-4', tiles: 'off', order: 'sequential' });
    assert.equal(job.order, 'sequential');
    await untilQueued(job.id);
    assert.deepEqual(await renderAll(job.id, 4), [1, 2, 3, 4]);
    assert.equal((await waitForJob(farm.server, job.id, ['completed', 'failed'], 60_000)).state, 'completed');
  });
});
