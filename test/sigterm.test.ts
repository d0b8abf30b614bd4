import assert from 'node:assert/strict';
import { mkdtempSync, openAsBlob, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Api, freePorts, startServerProcess, startWorkerProcess, until, type FarmProcess } from './helpers/processes.ts';
import { makeTestScene } from '../testkit/scenes.ts';

describe('graceful stop on SIGTERM (real processes)', () => {
  const processes: FarmProcess[] = [];
  after(async () => Promise.all(processes.map((p) => p.stop())));

  it('a worker finishes and uploads its frame before leaving; a server flushes and resumes after restart; no frame is lost', async () => {
    const root = mkdtempSync(join(tmpdir(), 'archenland-sigterm-'));
    const [port, webPort] = await freePorts(2);
    const ports = { port, webPort };
    const dataDir = join(root, 'server');
    let server = startServerProcess(dataDir, ports, { tail_duplicates: 'false' });
    processes.push(server);
    await server.waitForLog('server listening');
    const token = readFileSync(join(dataDir, 'worker-token'), 'utf8').trim();
    const leaving = startWorkerProcess(join(root, 'leaving'), ports, token, 'leaving');
    processes.push(leaving);
    const api = new Api(`http://127.0.0.1:${ports.webPort}`);
    await until(async () => (await api.workers()).length === 1, 30_000, 'the worker');
    const scene = await openAsBlob(await makeTestScene({ frames: '1-6', width: 320, height: 240, samples: 32 }));
    const job = await api.submit(scene);

    let frame: number | undefined;
    await until(async () => {
      frame = (await api.workers())[0]?.current?.frame;
      return frame !== undefined;
    }, 60_000, 'a frame rendering');
    leaving.signal('SIGTERM'); // once: a second signal would mean "stop at once"
    const code = await leaving.exit();
    assert.equal(code, 0, 'the worker exits cleanly');
    assert.equal(leaving.count('frame uploaded', (l) => l.frame === frame && l.accepted === true), 1, `frame ${frame} finished and uploaded before leaving`);
    assert.equal(leaving.count('frame rendered') >= 1, true);
    const afterWorker = await api.job(job.id);
    assert.equal(afterWorker.frameList.find((f) => f.number === frame)!.state, 'done');

    // The server, stopped gracefully mid-job, comes back with everything it had.
    const doneBefore = afterWorker.counts.done;
    assert.equal(await server.stop('SIGTERM'), 0, 'the server exits cleanly');
    server = startServerProcess(dataDir, ports, { tail_duplicates: 'false' });
    processes.push(server);
    await server.waitForLog('server listening');
    assert.equal((await api.job(job.id)).counts.done, doneBefore);
    const finisher = startWorkerProcess(join(root, 'finisher'), ports, token, 'finisher');
    processes.push(finisher);
    const final = await api.waitForJob(job.id, ['completed', 'failed']);
    assert.equal(final.state, 'completed', final.error ?? '');
    assert.equal(final.counts.done, 6);
    assert.equal(finisher.count('frame rendered', (l) => l.frame === frame), 0, 'the drained frame was not rendered again');
  });
});
