import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { openAsBlob } from 'node:fs';
import { after, describe, it } from 'node:test';
import { CLIENT_HEADER, type JobDetail } from '../src/protocol/index.ts';
import { startTestFarm, submitBlend, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { until } from './helpers/processes.ts';
import { makeTestScene } from '../testkit/scenes.ts';

const detail = async (farm: TestFarm, id: string) => (await (await fetch(`${farm.server.httpUrl}/api/jobs/${id}`)).json()) as JobDetail;

/** Blender itself misbehaving: scenes carry embedded Python that crashes or stalls Blender on frame 2. */
describe('Blender crashing or hanging on a frame (real Blender)', () => {
  const farms: TestFarm[] = [];
  after(async () => Promise.all(farms.map((f) => f.close())));

  it('a frame that crashes Blender is retried on the other worker, then failed with its log; the rest renders', async () => {
    // Without tail copies, so the attempts counted are exactly the retries.
    const farm = await startTestFarm({ workers: 2, worker: { allow_scripts: true }, server: { frame_retries: 1, tail_duplicates: false } });
    farms.push(farm);
    const scene = await openAsBlob(await makeTestScene({ frames: '1-4', width: 48, height: 32, samples: 2, misbehave: 'crash:2' }));
    const { body } = await submitBlend(farm.server.httpUrl, scene, { allowScripts: 'true' });
    const final = await waitForJob(farm.server, body.id, ['completed', 'failed']);
    assert.equal(final.state, 'failed');
    assert.match(final.error!, /^1 of 4 frames failed; frame 2: /);
    const job = await detail(farm, body.id);
    assert.deepEqual(job.frameList.map((f) => f.state), ['done', 'failed', 'done', 'done']);
    assert.equal(job.frameList[1]!.attempts, 2, 'tried twice: once and one retry');
    const log = await (await fetch(`${farm.server.httpUrl}/api/jobs/${body.id}/frames/2/log`)).json();
    assert.match(log.error, /Blender exited \(exit code 3\) while rendering frame 2/);
    assert.equal(typeof log.log, 'string', 'what Blender printed for the frame is kept (nothing, for a crash this early)');
    assert.ok(job.allowScripts);
  });

  it('the same scene renders cleanly when the job does not allow scripts: embedded Python never ran', async () => {
    const farm = await startTestFarm({ workers: 1 });
    farms.push(farm);
    const scene = await openAsBlob(await makeTestScene({ frames: '1-4', width: 48, height: 32, samples: 2, misbehave: 'crash:2' }));
    const { body } = await submitBlend(farm.server.httpUrl, scene);
    const final = await waitForJob(farm.server, body.id, ['completed', 'failed']);
    assert.equal(final.state, 'completed', final.error ?? '');
    assert.equal(final.allowScripts, false);
  });

  it('a frame that hangs is stopped at frame_timeout_s and failed; Blender is killed; the rest renders', async () => {
    const farm = await startTestFarm({ workers: 1, worker: { allow_scripts: true }, server: { frame_timeout_s: 4, frame_retries: 0 } });
    farms.push(farm);
    const scenePath = await makeTestScene({ frames: '1-3', width: 48, height: 32, samples: 2, misbehave: 'hang:2' });
    const { body } = await submitBlend(farm.server.httpUrl, await openAsBlob(scenePath), { allowScripts: 'true' });
    const final = await waitForJob(farm.server, body.id, ['completed', 'failed']);
    assert.equal(final.state, 'failed');
    const job = await detail(farm, body.id);
    assert.deepEqual(job.frameList.map((f) => f.state), ['done', 'failed', 'done']);
    assert.match(job.frameList[1]!.error!, /longer than the limit of 4 s/);
    // The hung Blender was killed at the timeout; the session for the other frames closes when the job ends.
    const blenders = () => execFileSync('ps', ['-eo', 'args']).toString().split('\n').filter((l) => l.includes(farm.root) && l.startsWith('blender'));
    await until(() => blenders().length === 0, 10_000, 'no Blender left running');
    const response = await fetch(`${farm.server.httpUrl}/api/jobs/${body.id}/retry`, { method: 'POST', headers: { [CLIENT_HEADER]: 't' } });
    assert.equal(response.status, 200);
  });
});
