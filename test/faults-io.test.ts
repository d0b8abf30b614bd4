import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, openAsBlob, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { CLIENT_HEADER, UPLOAD_KEY_HEADER, type JobDetail } from '../src/protocol/index.ts';
import { startTestFarm, submitBlend, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { until } from './helpers/processes.ts';
import { ScriptedWorker } from './helpers/scripted-worker.ts';
import { resultUpload } from '../testkit/fakes.ts';
import { makeTestScene } from '../testkit/scenes.ts';

/** Sends the headers and part of the body of a frame upload, then drops the connection. */
async function cutUpload(farm: TestFarm, jobId: string, frame: number, uploadKey: string) {
  const { body, contentType } = await resultUpload(Buffer.alloc(50_000, 7));
  const { port } = new URL(farm.server.httpUrl);
  const socket = connect(Number(port), '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write(
    `PUT /api/worker/jobs/${jobId}/frames/${frame} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${farm.server.tokens.worker}\r\n` +
      `${UPLOAD_KEY_HEADER}: ${uploadKey}\r\nContent-Type: ${contentType}\r\n` +
      `Content-Length: ${body.length}\r\n\r\n`,
  );
  socket.write(body.subarray(0, body.length - 30_000));
  await new Promise((resolve) => setTimeout(resolve, 200));
  socket.destroy();
  await new Promise((resolve) => setTimeout(resolve, 300));
}

describe('uploads cut short, duplicated, or hitting a full disk', () => {
  const farms: TestFarm[] = [];
  const mounts: string[] = [];
  after(async () => {
    await Promise.all(farms.map((f) => f.close()));
    for (const m of mounts) execFileSync('umount', ['-l', m]);
  });

  it('a frame upload cut mid-file leaves nothing behind; a duplicate result is refused; the first valid result stands', async () => {
    const farm = await startTestFarm();
    farms.push(farm);
    const worker = await ScriptedWorker.connect(farm); // answers the probe: one frame
    const scene = await openAsBlob(await makeTestScene({ frames: '1-3', width: 48, height: 32, samples: 2 }));
    const { body } = await submitBlend(farm.server.httpUrl, scene);
    await worker.next('probe');
    worker.send({ type: 'ready' });
    await worker.next('render');

    await cutUpload(farm, body.id, 1, worker.uploadKey);
    assert.deepEqual(readdirSync(farm.server.dataDir.tmp), [], 'no temp file left');
    let job = (await (await fetch(`${farm.server.httpUrl}/api/jobs/${body.id}`)).json()) as JobDetail;
    assert.equal(job.frameList[0]!.state, 'rendering', 'the frame is still to be delivered');

    const first = Buffer.from('first valid result');
    assert.deepEqual((await worker.upload(`/api/worker/jobs/${body.id}/frames/1`, first)).body, { accepted: true });
    const late = await worker.upload(`/api/worker/jobs/${body.id}/frames/1`, Buffer.from('a late duplicate'));
    assert.deepEqual(late.body, { accepted: false, reason: 'frame already done' });
    worker.close();
    const served = Buffer.from(await (await fetch(`${farm.server.httpUrl}/api/jobs/${body.id}/frames/1`)).arrayBuffer());
    assert.equal(served.toString(), 'first valid result');
    job = (await (await fetch(`${farm.server.httpUrl}/api/jobs/${body.id}`)).json()) as JobDetail;
    assert.equal(job.counts.done, 1);
  });

  it('a worker whose disk is full hands its frame back: no failure is counted, the job waits, then completes once space is freed', async () => {
    const farm = await startTestFarm({ workers: 1 });
    farms.push(farm);
    const scene = await openAsBlob(await makeTestScene({ frames: '1-3', width: 48, height: 32, samples: 2 }));
    const { body } = await submitBlend(farm.server.httpUrl, scene, { hold: 'true' });
    await waitForJob(farm.server, body.id, ['paused']);
    const call = (path: string) => fetch(`${farm.server.httpUrl}${path}`, { method: 'POST', headers: { [CLIENT_HEADER]: 't' } });
    const [roomy] = await (await fetch(`${farm.server.httpUrl}/api/workers`)).json();
    await call(`/api/workers/${roomy.id}/drain`);

    const cacheDir = join(mkdtempSync(join(tmpdir(), 'archenland-workerfull-')), 'cache');
    mkdirSync(cacheDir);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', cacheDir]);
    mounts.push(cacheDir);
    const filler = join(cacheDir, 'filler');
    writeFileSync(filler, Buffer.alloc(7 * 1024 * 1024));
    farm.addWorker('cramped', { cache_dir: cacheDir, min_free_mb: 2 });
    await call(`/api/jobs/${body.id}/resume`);

    await new Promise((resolve) => setTimeout(resolve, 4000));
    let job = (await (await fetch(`${farm.server.httpUrl}/api/jobs/${body.id}`)).json()) as JobDetail;
    assert.ok(['queued', 'rendering'].includes(job.state), `the job waits (${job.state})`);
    assert.equal(job.counts.failed, 0);
    assert.equal(job.counts.done, 0);
    assert.ok(job.frameList.every((f) => f.attempts === 0), 'a frame handed back costs no attempt');

    // A new job submitted now must be probed; the cramped worker hands the probe back too.
    const { body: second } = await submitBlend(farm.server.httpUrl, scene);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    assert.equal((await (await fetch(`${farm.server.httpUrl}/api/jobs/${second.id}`)).json()).state, 'probing', 'the probe waits too');

    rmSync(filler);
    assert.equal((await waitForJob(farm.server, second.id, ['completed', 'failed'], 60_000)).state, 'completed');
    const final = await waitForJob(farm.server, body.id, ['completed', 'failed'], 60_000);
    assert.equal(final.state, 'completed', final.error ?? '');
    job = (await (await fetch(`${farm.server.httpUrl}/api/jobs/${body.id}`)).json()) as JobDetail;
    const workers = await (await fetch(`${farm.server.httpUrl}/api/workers`)).json();
    const cramped = workers.find((w: { name: string }) => w.name === 'cramped');
    assert.ok(job.frameList.every((f) => f.workerId === cramped.id), 'the cramped worker rendered them once it had room');
  });

  it('a full disk on the server pauses the job with a clear error, damages nothing, and the job completes once space is freed', async () => {
    const root = mkdtempSync(join(tmpdir(), 'archenland-diskfull-'));
    const dataDir = join(root, 'data');
    mkdirSync(dataDir);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=12m', 'tmpfs', dataDir]);
    mounts.push(dataDir);
    const farm = await startTestFarm({ workers: 1, server: { data_dir: dataDir } });
    farms.push(farm);
    const scene = await openAsBlob(await makeTestScene({ frames: '1-3', width: 256, height: 192, samples: 2 }));
    const { body } = await submitBlend(farm.server.httpUrl, scene, { hold: 'true' });
    await waitForJob(farm.server, body.id, ['paused']);
    const blendBefore = readFileSync(farm.server.dataDir.blend(body.blendSha256));

    // Fill the disk, leaving only a little room for the database's own writes.
    const filler = join(dataDir, 'filler');
    const free = Number(execFileSync('df', ['--output=avail', '-B1', dataDir]).toString().split('\n')[1]);
    writeFileSync(filler, Buffer.alloc(Math.max(0, free - 64 * 1024)));

    await fetch(`${farm.server.httpUrl}/api/jobs/${body.id}/resume`, { method: 'POST', headers: { [CLIENT_HEADER]: 't' } });
    let job: JobDetail | undefined;
    await until(async () => {
      job = (await (await fetch(`${farm.server.httpUrl}/api/jobs/${body.id}`)).json()) as JobDetail;
      return job.state === 'paused' && /disk is full/.test(job.error ?? '');
    }, 60_000, 'the job to pause for the full disk');
    assert.match(job!.error!, /paused because the server's disk is full/);
    assert.deepEqual(readFileSync(farm.server.dataDir.blend(body.blendSha256)), blendBefore, 'the stored .blend is intact');

    rmSync(filler);
    await fetch(`${farm.server.httpUrl}/api/jobs/${body.id}/resume`, { method: 'POST', headers: { [CLIENT_HEADER]: 't' } });
    const final = await waitForJob(farm.server, body.id, ['completed', 'failed'], 120_000);
    assert.equal(final.state, 'completed', final.error ?? '');
    assert.equal(final.counts.done, 3);
  });
});
