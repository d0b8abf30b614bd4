/**
 * What one worker can do to the farm: only deliver, fail or report on the frames it was
 * given, through its own connection; and run a .blend's Python only where its owner allows.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { UPLOAD_KEY_HEADER, type Job, type JobDetail } from '../src/protocol/index.ts';
import { fakeBlend, submitJob } from '../testkit/api.ts';
import { startTestFarm, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { ScriptedWorker } from './helpers/scripted-worker.ts';

const png = () => sharp({ create: { width: 200, height: 100, channels: 3, background: { r: 10, g: 20, b: 30 } } }).png().toBuffer();

async function jobDetail(farm: TestFarm, id: string): Promise<JobDetail> {
  const response = await fetch(`${farm.server.httpUrl}/api/jobs/${id}`, { headers: { authorization: `Bearer ${farm.server.tokens.user}` } });
  return (await response.json()) as JobDetail;
}

describe('a frame belongs to the worker it was given to', () => {
  let farm: TestFarm;
  let owner: ScriptedWorker;
  let intruder: ScriptedWorker;

  before(async () => {
    farm = await startTestFarm({ server: { tail_duplicates: false } });
    owner = await ScriptedWorker.connect(farm, { name: 'owner' });
  });
  after(async () => {
    owner?.close();
    intruder?.close();
    await farm?.close();
  });

  it('refuses a result, a failure or progress for that frame from another worker', async () => {
    const job = await submitJob(farm.server.httpUrl, farm.server.tokens.user!, fakeBlend(), { tiles: 'off' });
    await owner.next('probe');
    owner.send({ type: 'ready' });
    const assignment = await owner.next('render');
    intruder = await ScriptedWorker.connect(farm, { name: 'intruder' });
    const path = `/api/worker/jobs/${job.id}/frames/${assignment.frame}`;

    const forged = await intruder.upload(path, await png());
    assert.deepEqual(forged.body, { accepted: false, reason: `frame ${assignment.frame} was not assigned to this worker` });
    intruder.send({ type: 'frame_failed', jobId: job.id, frame: assignment.frame, error: 'forged', log: '' });
    intruder.send({ type: 'progress', jobId: job.id, frame: assignment.frame, percent: 99 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const frame = (await jobDetail(farm, job.id)).frameList[0]!;
    assert.equal(frame.state, 'rendering');
    assert.equal(frame.attempts, 0, 'a forged failure counts no attempt');
    assert.ok(frame.progress < 99, 'forged progress is not shown');

    // A key is bound to its connection: the owner's key in another's hands, or after it left, opens nothing.
    const stolen = await intruder.upload(path, await png(), { [UPLOAD_KEY_HEADER]: 'x'.repeat(32) });
    assert.equal(stolen.status, 503);

    assert.deepEqual((await owner.upload(path, await png())).body, { accepted: true });
    const done = await waitForJob(farm.server, job.id, ['completed', 'failed'], 20_000);
    assert.equal(done.state, 'completed');
  });
});

describe('scripts run only on workers that allow them', () => {
  let farm: TestFarm;
  const workers: ScriptedWorker[] = [];
  before(async () => (farm = await startTestFarm()));
  after(async () => {
    for (const worker of workers) worker.close();
    await farm?.close();
  });

  it('keeps a job with scripts from workers that do not allow them, says why it waits, and gives it to one that does', async () => {
    const careful = await ScriptedWorker.connect(farm, { name: 'careful' });
    workers.push(careful);
    const job = await submitJob(farm.server.httpUrl, farm.server.tokens.user!, fakeBlend(), { allowScripts: 'true', tiles: 'off' });
    const probe = await careful.next('probe');
    assert.equal(probe.allowScripts, false, 'a worker that refuses scripts reads the scene with them off');
    careful.send({ type: 'ready' });

    const waiting = await waitForNotice(farm, job.id);
    assert.match(waiting.notice ?? '', /no connected worker allows them/);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(careful.received.filter((m) => m.type === 'render').length, 0, 'the careful worker got no frame of it');

    const trusting = await ScriptedWorker.connect(farm, { name: 'trusting', allowScripts: true });
    workers.push(trusting);
    trusting.send({ type: 'ready' });
    const assignment = await trusting.next('render');
    assert.equal(assignment.allowScripts, true);
    const detail = await jobDetail(farm, job.id);
    assert.equal(detail.notice, null, 'the notice goes once a worker may take the job');
  });
});

async function waitForNotice(farm: TestFarm, jobId: string): Promise<Job> {
  for (let waited = 0; waited < 10_000; waited += 50) {
    const job = await jobDetail(farm, jobId);
    if (job.notice) return job;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('the job never said why it waits');
}
