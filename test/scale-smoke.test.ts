/**
 * A small version of the scale benchmark (bench/scale.ts), asserting correctness only:
 * 50 simulated workers (real WebSocket clients, real frame uploads; testkit/sim-worker.ts)
 * take a 2,000-frame job from a real server. Speed is the benchmark's business, not this test's.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Job, JobDetail, Worker } from '../src/protocol/index.ts';
import { fakeBlend, getJson, submitJob } from '../testkit/api.ts';
import { fakeScene, frameFromBuffer, TINY_PNG } from '../testkit/fakes.ts';
import { SimulatedWorkers } from '../testkit/sim-worker.ts';
import { startTestFarm, waitForJob, type TestFarm } from '../testkit/farm.ts';

const WORKERS = 50;
const FRAMES = 2000;

describe(`scale smoke: ${WORKERS} simulated workers render a ${FRAMES}-frame job`, () => {
  let farm: TestFarm;
  let sims: SimulatedWorkers;
  let finished: Job;

  before(async () => {
    farm = await startTestFarm();
    sims = await SimulatedWorkers.start({
      wsUrl: `ws://127.0.0.1:${farm.server.wsPort}`,
      httpUrl: farm.server.httpUrl,
      token: farm.server.tokens.worker!,
      count: WORKERS,
      renderMs: () => Math.random() * 4,
      scene: () => fakeScene(1, FRAMES),
      frame: frameFromBuffer(TINY_PNG),
      frameLog: 'Fra:1 Mem:9.25M (Peak 10.91M) | Time:00:00.01 | Sample 4/4\nSaved: frame_0001.png',
    });
    const job = await submitJob(farm.server.httpUrl, farm.server.tokens.user!, fakeBlend());
    finished = await waitForJob(farm.server, job.id, ['completed', 'failed', 'cancelled'], 45_000);
  });

  after(async () => {
    await sims?.close();
    await farm?.close();
  });

  it('completes the job, video included', () => {
    assert.equal(finished.state, 'completed', `job ended ${finished.state}: ${finished.error}`);
    assert.deepEqual(finished.counts, { total: FRAMES, queued: 0, rendering: 0, done: FRAMES, failed: 0 });
    assert.equal(finished.videoReady, true);
  });

  it('has every frame done exactly once', async () => {
    const detail = await getJson<JobDetail>(farm.server.httpUrl, farm.server.tokens.user!, `/api/jobs/${finished.id}`);
    assert.equal(detail.frameList.length, FRAMES);
    assert.deepEqual(
      detail.frameList.map((f) => f.number),
      Array.from({ length: FRAMES }, (_, i) => i + 1),
    );
    const notDone = detail.frameList.filter((f) => f.state !== 'done');
    assert.deepEqual(notDone, [], 'frames not done');

    // Seen from the workers: each frame accepted exactly once. A frame may be handed out twice
    // (tail duplication copies a slow running frame to an idle worker); the copy that loses is
    // either cancelled or its upload refused, never counted.
    const assigned = sims.stats.assigned.get(finished.id)!;
    const accepted = sims.stats.accepted.get(finished.id)!;
    assert.equal(assigned.size, FRAMES);
    assert.equal(accepted.size, FRAMES);
    let copies = 0;
    for (let frame = 1; frame <= FRAMES; frame++) {
      assert.equal(accepted.get(frame), 1, `frame ${frame} accepted ${accepted.get(frame)} times`);
      copies += assigned.get(frame)! - 1;
    }
    assert.equal(sims.stats.uploadsAccepted, FRAMES);
    assert.ok(sims.stats.uploadsRefused <= copies, `${sims.stats.uploadsRefused} uploads refused but only ${copies} copies handed out`);
    assert.equal(sims.stats.uploadErrors, 0);
    assert.deepEqual(sims.stats.errors, []);
  });

  it('reports every worker, connected, with the frames each rendered', async () => {
    const workers = await getJson<Worker[]>(farm.server.httpUrl, farm.server.tokens.user!, '/api/workers');
    assert.equal(workers.length, WORKERS);
    assert.deepEqual(workers.map((w) => w.id).sort(), [...sims.workerIds].sort());
    for (const w of workers) assert.notEqual(w.state, 'offline', `${w.name} is offline`);
    assert.equal(workers.reduce((sum, w) => sum + w.framesRendered, 0), FRAMES);
    const spread = workers.filter((w) => w.framesRendered > 0).length;
    assert.ok(spread >= WORKERS / 2, `only ${spread} of ${WORKERS} workers got frames`);
  });
});
