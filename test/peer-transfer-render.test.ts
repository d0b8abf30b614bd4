/**
 * Peer transfer in real render workers (RenderWorker with real Blender and peer_port): a
 * job with a project on two workers; the one that did not probe it fetches the project
 * from the one that did, and the server sends each file once.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { apiPath, type JobDetail, type Worker } from '../src/protocol/index.ts';
import { getJson, uploadProject } from '../testkit/api.ts';
import { startTestFarm, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { makeTestScene } from '../testkit/scenes.ts';

describe('peer transfer between render workers', () => {
  let farm: TestFarm;

  before(async () => {
    farm = await startTestFarm();
    farm.addWorker('render-a', { peer_port: 0 });
    farm.addWorker('render-b', { peer_port: 0 });
  });
  after(async () => {
    await farm?.close();
    rmSync(farm.root, { recursive: true, force: true });
  });

  it('the second worker takes the project from the first: each file leaves the server once, and the job completes', async () => {
    const scene = readFileSync(await makeTestScene({ frames: '1-8' }));
    // Both workers connected and idle first, so both take frames.
    for (let waited = 0; ; waited += 100) {
      const workers = await getJson<Worker[]>(farm.server.httpUrl, farm.server.tokens.user!, apiPath('listWorkers'));
      if (workers.filter((worker) => worker.state === 'idle').length === 2) break;
      if (waited > 60_000) throw new Error(`workers not ready: ${JSON.stringify(workers)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const files = [{ path: 'tex/unused-a.bin', data: randomBytes(512 * 1024) }, { path: 'tex/unused-b.bin', data: randomBytes(512 * 1024) }];
    const sent = async () => Number(/^archenland_worker_download_bytes_total (\d+)/m.exec(await (await fetch(`${farm.server.httpUrl}/metrics`)).text())?.[1]);
    const before = await sent();
    const { jobId } = await uploadProject(farm.server.httpUrl, farm.server.tokens.user!, files, scene);
    const job = await waitForJob(farm.server, jobId, ['completed', 'failed'], 180_000);
    assert.equal(job.state, 'completed', job.error ?? '');
    const detail = await getJson<JobDetail>(farm.server.httpUrl, farm.server.tokens.user!, apiPath('getJob', { id: jobId }));
    assert.equal(new Set(detail.frameList.map((frame) => frame.workerId)).size, 2, 'both workers rendered frames, so both laid the project out');
    const projectBytes = scene.length + files.reduce((sum, file) => sum + file.data.length, 0);
    assert.equal((await sent()) - before, projectBytes, 'one copy of the .blend and each file from the server');
  });
});
