import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, openAsBlob, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { JobDetail } from '../src/protocol/index.ts';
import { Api, CuttableLink, freePorts, startServerProcess, startWorkerProcess, until, type FarmProcess } from './helpers/processes.ts';
import { makeTestScene } from '../testkit/scenes.ts';

/**
 * Faults injected into real processes: the server and workers run as `archenland`
 * processes with real Blender, and are killed, frozen or cut off mid-job. Every test
 * ends by checking that every frame is done and no finished frame was lost.
 */
describe('the farm survives crashes and network faults (real processes)', () => {
  let scene: Blob;
  const processes: FarmProcess[] = [];

  before(async () => {
    // Frames of about half a second on one thread, so faults land mid-frame.
    scene = await openAsBlob(await makeTestScene({ frames: '1-6', width: 320, height: 240, samples: 32 }));
  });
  after(async () => {
    await Promise.all(processes.map((p) => p.stop()));
  });

  async function farm(settings: Record<string, string> = {}) {
    const root = mkdtempSync(join(tmpdir(), 'archenland-faults-'));
    const [port, webPort] = await freePorts(2);
    const ports = { port, webPort };
    const dataDir = join(root, 'server');
    const start = () => {
      const server = startServerProcess(dataDir, ports, settings);
      processes.push(server);
      return server;
    };
    const server = start();
    await server.waitForLog('server listening');
    const token = readFileSync(join(dataDir, 'worker-token'), 'utf8').trim();
    const worker = (name: string, via = ports) => {
      const p = startWorkerProcess(join(root, name), via, token, name);
      processes.push(p);
      return p;
    };
    return { root, ports, dataDir, token, server, start, worker, api: new Api(`http://127.0.0.1:${ports.webPort}`) };
  }

  const doneFrames = (job: JobDetail) => job.frameList.filter((f) => f.state === 'done');
  const assertAllDone = (job: JobDetail) => {
    assert.equal(job.state, 'completed', job.error ?? '');
    assert.deepEqual(job.counts, { total: 6, queued: 0, rendering: 0, done: 6, failed: 0 });
  };

  it('server killed with SIGKILL mid-job: restarts, resumes, loses and re-renders nothing', async () => {
    const f = await farm();
    const worker = f.worker('w1');
    const job = await f.api.submit(scene);
    let before: JobDetail | undefined;
    await until(async () => doneFrames((before = await f.api.job(job.id))).length >= 2, 60_000, '2 frames done');
    const finishedBefore = new Map(doneFrames(before!).map((fr) => [fr.number, fr.finishedAt]));
    // A read may show a write up to 10 ms before its group commit (store/group-commit.ts; the
    // worker's upload is answered only after it). Killed later than that, every frame the read
    // showed done is on disk: those are the ones that must come back unchanged.
    await new Promise((resolve) => setTimeout(resolve, 200));

    await f.server.stop('SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const restarted = f.start();
    await restarted.waitForLog('farm state restored');
    const final = await f.api.waitForJob(job.id, ['completed', 'failed']);

    assertAllDone(final);
    for (const [number, finishedAt] of finishedBefore) {
      assert.equal(final.frameList.find((fr) => fr.number === number)!.finishedAt, finishedAt, `frame ${number} kept`);
      assert.equal(worker.count('frame rendered', (l) => l.frame === number), 1, `frame ${number} rendered once`);
      assert.ok(existsSync(join(f.dataDir, 'jobs', job.id, 'frames', `frame_${String(number).padStart(4, '0')}.png`)));
    }
    assert.ok(worker.count('connected to the server') >= 2, 'the worker reconnected by itself');
  });

  it('worker killed mid-frame: its frame goes to another worker', async () => {
    const f = await farm();
    const doomed = f.worker('doomed');
    f.worker('survivor');
    await until(async () => (await f.api.workers()).length === 2, 30_000, 'two workers');
    const job = await f.api.submit(scene);
    let victimFrame: number | undefined;
    await until(async () => {
      const w = (await f.api.workers()).find((x) => x.name === 'doomed');
      victimFrame = w?.current?.frame;
      return victimFrame !== undefined && doneFrames(await f.api.job(job.id)).length >= 1;
    }, 60_000, 'the doomed worker to render');
    await doomed.stop('SIGKILL');
    const final = await f.api.waitForJob(job.id, ['completed', 'failed']);
    assertAllDone(final);
    const frame = final.frameList.find((fr) => fr.number === victimFrame)!;
    const survivor = (await f.api.workers()).find((w) => w.name === 'survivor')!;
    assert.equal(frame.workerId, survivor.id, `frame ${victimFrame} was finished by the survivor`);
    assert.equal((await f.api.workers()).find((w) => w.name === 'doomed')!.state, 'offline');
  });

  it('worker frozen without closing its socket: heartbeats notice within the timeout, a late result is harmless', async () => {
    const f = await farm({ heartbeat_timeout_s: '2' });
    const frozen = f.worker('frozen');
    f.worker('steady');
    await until(async () => (await f.api.workers()).length === 2, 30_000, 'two workers');
    const job = await f.api.submit(scene);
    let victimFrame: number | undefined;
    await until(async () => {
      victimFrame = (await f.api.workers()).find((x) => x.name === 'frozen')?.current?.frame;
      return victimFrame !== undefined;
    }, 60_000, 'the frozen worker to render');
    frozen.signal('SIGSTOP');
    const stoppedAt = Date.now();
    await until(async () => (await f.api.workers()).find((w) => w.name === 'frozen')!.state === 'offline', 15_000, 'offline');
    const noticedMs = Date.now() - stoppedAt;
    assert.ok(noticedMs <= 2 * 2000 + 1500, `noticed after ${noticedMs} ms`);
    await until(async () => doneFrames(await f.api.job(job.id)).some((fr) => fr.number === victimFrame), 60_000, 'the frame re-rendered');
    frozen.signal('SIGCONT'); // it wakes up, finishes its stale frame and reports it late
    const final = await f.api.waitForJob(job.id, ['completed', 'failed']);
    assertAllDone(final);
  });

  it('network cut between worker and server: the worker reconnects and uploads the frame it finished meanwhile', async () => {
    const f = await farm();
    const wsLink = new CuttableLink(f.ports.port);
    const httpLink = new CuttableLink(f.ports.webPort);
    const via = { port: await wsLink.open(), webPort: await httpLink.open() };
    const worker = f.worker('remote', via);
    const job = await f.api.submit(scene);
    let cutFrame: number | undefined;
    await until(async () => {
      const [w] = await f.api.workers();
      cutFrame = w?.current?.frame;
      return cutFrame !== undefined && doneFrames(await f.api.job(job.id)).length >= 1;
    }, 60_000, 'a frame rendering');
    await wsLink.cut();
    await httpLink.cut();
    // The frame finishes while the worker is cut off; its upload waits.
    await worker.waitForLog('frame rendered', 30_000, (l) => l.frame === cutFrame);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await wsLink.mend();
    await httpLink.mend();
    const final = await f.api.waitForJob(job.id, ['completed', 'failed']);
    assertAllDone(final);
    assert.equal(worker.count('frame rendered', (l) => l.frame === cutFrame), 1, 'the frame finished offline was uploaded, not rendered again');
    assert.ok(worker.count('connected to the server') >= 2);
    await wsLink.cut();
    await httpLink.cut();
  });
});
