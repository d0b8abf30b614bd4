/**
 * The farm's parts without sockets: an in-memory SQLite store, a data folder in a temp
 * dir, and fake worker links that record what the farm sends them.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import sharp from 'sharp';
import { Farm, type WorkerLink } from '../src/farm/index.ts';
import { jobOptionsSchema, jobSchema, sceneInfoSchema, type FarmChange, type SceneInfo, type ServerToWorker, type WorkerHello } from '../src/protocol/index.ts';
import { DataDir, Store, type ReceivedFile } from '../src/store/index.ts';
import { silentLogger } from '../src/util/log.ts';

const scene = (frames: number): SceneInfo =>
  sceneInfoSchema.parse({
    sceneName: 'Scene', frameStart: 1, frameEnd: frames, frameStep: 1, fps: 24, resolutionX: 64, resolutionY: 32,
    resolutionPercentage: 100, engine: 'CYCLES', fileFormat: 'PNG', samples: 1, denoising: false, blenderVersion: '3.4.1',
  });
const options = (allowScripts = false) => jobOptionsSchema.parse({ allowScripts, tiles: 'off' });

/** A worker link that records every message and can be asked for the next of a kind. */
class FakeLink implements WorkerLink {
  readonly sent: ServerToWorker[] = [];
  closed: string | null = null;
  send(message: ServerToWorker): void {
    this.sent.push(message);
  }
  close(reason: string): void {
    this.closed = reason;
  }
  last<T extends ServerToWorker['type']>(type: T): Extract<ServerToWorker, { type: T }> | undefined {
    return this.sent.filter((m) => m.type === type).at(-1) as Extract<ServerToWorker, { type: T }> | undefined;
  }
}

const hello = (name: string, extra: Partial<WorkerHello> = {}): WorkerHello => ({
  type: 'hello', role: 'worker', protocol: 3, token: 'unused-by-the-farm', name, host: 'test', threads: 1,
  blenderVersion: '3.4.1', blenders: [], allowScripts: false, tags: [], holding: [], ...extra,
});

async function farmInMemory(options: { frameTimeoutMs?: number } = {}) {
  const root = mkdtempSync(path.join(os.tmpdir(), 'archenland-parts-'));
  const dataDir = new DataDir(root);
  dataDir.create();
  const store = await Store.open(':memory:');
  const farm = new Farm(store, dataDir, { ffmpegPath: 'ffmpeg', frameRetries: 1, frameTimeoutMs: options.frameTimeoutMs ?? 0, duplicateTail: false }, silentLogger);
  const changes: FarmChange[] = [];
  farm.on('event', (change) => changes.push(change));
  let files = 0;
  /** A file as the HTTP edge would hand it over: received into tmp/, checksummed. */
  const received = (bytes: Buffer): ReceivedFile => {
    const tempPath = path.join(dataDir.tmp, `t${files++}`);
    writeFileSync(tempPath, bytes);
    return { tempPath, sha256: `${'0'.repeat(60)}${String(files).padStart(4, '0')}`, size: bytes.length, head: bytes.subarray(0, 16) };
  };
  const close = async () => {
    await farm.stop();
    await store.close();
  };
  return { farm, store, dataDir, changes, received, close };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

describe('the farm, part by part, without sockets', () => {
  const closers: Array<() => Promise<void>> = [];
  after(async () => {
    for (const close of closers) await close();
  });

  it('probes, dispatches, takes results only from the assigned worker, and encodes the video', async () => {
    const { farm, received, changes, close } = await farmInMemory();
    closers.push(close);
    const job = await farm.submitJob(received(Buffer.from('BLENDER-v304 scene')), options(), 'shot.blend');
    assert.equal(job.state, 'probing');
    assert.equal(job.name, 'shot');

    const link = new FakeLink();
    const workerId = await farm.workerConnected(hello('w1'), link);
    assert.equal(link.last('welcome')?.workerId, workerId);
    await settle();
    const probe = link.last('probe');
    assert.equal(probe?.jobId, job.id, 'the connected worker is asked to read the scene');

    await farm.probeSucceeded(workerId, job.id, scene(2));
    assert.equal((await farm.getJob(job.id)).state, 'queued');
    farm.workerReady(workerId);
    await settle();
    const first = link.last('render');
    assert.equal(first?.frame, 1);
    assert.equal((await farm.getJob(job.id)).state, 'rendering');

    const other = new FakeLink();
    const otherId = await farm.workerConnected(hello('w2'), other);
    const png = await sharp({ create: { width: 64, height: 32, channels: 3, background: '#336699' } }).png().toBuffer();
    const result = (log = '', passes: string[] = []) => ({
      image: received(png),
      renderMs: 10,
      log,
      blenderVersion: '3.4.1',
      passes: passes.map((name) => ({ name, file: received(Buffer.from(name)) })),
    });
    const refused = result('', ['compositor/Depth0001.png']);
    assert.deepEqual(await farm.frameUploaded(otherId, job.id, 1, refused), { accepted: false, reason: 'frame 1 was not assigned to this worker' });
    assert.equal(existsSync(refused.passes[0]!.file.tempPath), false, 'a refused result leaves no file behind');

    assert.deepEqual(await farm.frameUploaded(workerId, job.id, 1, result('Fra:1 rendered', ['compositor/Depth0001.png'])), { accepted: true });
    assert.equal((await farm.frameLog(job.id, 1)).log, 'Fra:1 rendered', 'the log comes with the result');
    assert.deepEqual(await farm.framePasses(job.id, 1), [{ name: 'compositor/Depth0001.png', size: 24 }]);
    farm.workerReady(workerId);
    await settle();
    assert.equal(link.last('render')?.frame, 2);
    assert.deepEqual(await farm.frameUploaded(workerId, job.id, 2, result()), { accepted: true });
    assert.deepEqual(await farm.framePasses(job.id, 2), [], 'a frame without File Output nodes has no passes');

    for (let waited = 0; (await farm.getJob(job.id)).state !== 'completed' && waited < 20_000; waited += 50) await settle();
    const done = await farm.getJob(job.id);
    assert.equal(done.state, 'completed', done.error ?? '');
    assert.ok(done.videoReady);
    assert.ok(changes.some((c) => c.type === 'job' && c.job.state === 'encoding'), 'every state was announced');
  });

  it('gives a lost worker\'s frame to another, and fails a frame that runs past the time limit', async () => {
    const { farm, received, close } = await farmInMemory({ frameTimeoutMs: 200 });
    closers.push(close);
    const job = await farm.submitJob(received(Buffer.from('BLENDER-v304 scene')), options(), 'shot.blend');
    const a = new FakeLink();
    const aId = await farm.workerConnected(hello('a'), a);
    await settle();
    await farm.probeSucceeded(aId, job.id, scene(1));
    farm.workerReady(aId);
    await settle();
    assert.equal(a.last('render')?.frame, 1);
    await farm.workerDisconnected(aId, a);

    const b = new FakeLink();
    const bId = await farm.workerConnected(hello('b'), b);
    farm.workerReady(bId);
    await settle();
    assert.equal(b.last('render')?.frame, 1, 'the frame went to the other worker');
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.deepEqual(b.last('cancel'), { type: 'cancel', jobId: job.id, frame: 1, tile: undefined });
    const frame = (await farm.getJobDetail(job.id)).frameList[0]!;
    assert.equal(frame.attempts, 1);
    assert.match(frame.error ?? '', /longer than the limit/);
  });

  it('waits for a worker that allows scripts, and says so', async () => {
    const { farm, received, close } = await farmInMemory();
    closers.push(close);
    const job = await farm.submitJob(received(Buffer.from('BLENDER-v304 scene')), options(true), 'rig.blend');
    const careful = new FakeLink();
    const carefulId = await farm.workerConnected(hello('careful'), careful);
    await settle();
    assert.equal(careful.last('probe')?.allowScripts, false, 'read with scripts off');
    await farm.probeSucceeded(carefulId, job.id, scene(1));
    farm.workerReady(carefulId);
    await settle();
    assert.equal(careful.last('render'), undefined);
    assert.match((await farm.getJob(job.id)).notice ?? '', /no connected worker allows them/);
  });
});

describe('job records', () => {
  it('show a render setting reset to the scene\'s own as not asked, so the job still fits its schema', async () => {
    const { farm, received, close } = await farmInMemory();
    try {
      const job = await farm.submitJob(received(Buffer.from('BLENDER-v304 scene')), jobOptionsSchema.parse({ hold: true, tiles: 'off' }), 'held.blend');
      const link = new FakeLink();
      const workerId = await farm.workerConnected(hello('w'), link);
      await settle();
      await farm.probeSucceeded(workerId, job.id, scene(3));
      assert.equal((await farm.patchJob(job.id, { resolutionPercentage: 50 })).requested.resolutionPercentage, 50);
      const reset = await farm.patchJob(job.id, { resolutionPercentage: null });
      assert.equal('resolutionPercentage' in reset.requested, false);
      assert.ok(jobSchema.safeParse(reset).success, 'the job as the API sends it fits the shared schema');
    } finally {
      await close();
    }
  });
});

describe('project files', () => {
  it('are stored once, answered as missing until uploaded, and collected when no job uses them any more', async () => {
    const { farm, store, dataDir, received, close } = await farmInMemory();
    try {
      const bytes = Buffer.from('a texture');
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      const manifest = { root: '/studio/shot', main: 'main.blend', files: [{ path: 'tex/a.png', sha256, size: bytes.length }, { path: 'tex/same.png', sha256, size: bytes.length }] };
      const first = await farm.createProject(manifest);
      assert.deepEqual(first.missing, [sha256], 'one upload for two paths with the same content');
      assert.equal(first.missingBytes, bytes.length);
      await assert.rejects(farm.storeProjectFile('f'.repeat(64), { ...received(bytes), sha256 }), /checksum mismatch/);
      await farm.storeProjectFile(sha256, { ...received(bytes), sha256 });
      assert.deepEqual((await farm.createProject(manifest)).missing, [], 'the second time, nothing is missing');

      const job = await farm.submitJob(received(Buffer.from('BLENDER-v304 scene')), { ...options(), project: first.id }, 'main.blend');
      assert.equal(job.projectId, first.id);
      // A day later nothing is collected while the job exists; once it is gone, its files are.
      const dayAgo = new Date(Date.now() - 25 * 3600 * 1000);
      await store.db.updateTable('projects').set({ created_at: dayAgo.toISOString() }).execute();
      utimesSync(dataDir.projectFile(sha256), dayAgo, dayAgo);
      assert.deepEqual(await farm.collectGarbage(), { files: 0, bytes: 0 });
      await farm.deleteJob(job.id);
      await settle();
      assert.equal(existsSync(dataDir.projectFile(sha256)), false, 'deleting the last job that used it collected the file');
    } finally {
      await close();
    }
  });
});
