/**
 * Videos encoded while jobs render, end to end: a real server (real SQLite, real ffmpeg)
 * and simulated workers (real WebSocket clients, real uploads; testkit/sim-worker.ts)
 * uploading distinct frames in the farm's interleaved order. Whatever happens to a job,
 * its video must be byte for byte the batch encode of its frames folder at the end.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ServerSettings } from '../src/config/index.ts';
import type { Job, SceneInfo } from '../src/protocol/index.ts';
import { apiPath } from '../src/protocol/index.ts';
import { fakeBlend, postJson, submitJob } from '../testkit/api.ts';
import { fakeScene, frameFromBuffer, type FrameBody } from '../testkit/fakes.ts';
import { startTestFarm, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { SimulatedWorkers } from '../testkit/sim-worker.ts';
import { Api, freePorts, startServerProcess, until, type FarmProcess } from './helpers/processes.ts';
import { batchEncode, filesMatching, makeFrames, md5, probeVideo } from './helpers/video.ts';

const work = mkdtempSync(path.join(os.tmpdir(), 'archenland-video-e2e-'));
const FRAMES = 40;

/** Frames 1..n of one format, each its own image, as bodies the simulated workers upload. */
async function frameBodies(name: string, n: number, extension: 'png' | 'tif', seed = 0): Promise<FrameBody[]> {
  const set = await makeFrames(path.join(work, name), Array.from({ length: n }, (_, i) => i + 1), { width: 96, height: 54, extension, seed });
  return set.files.map((file) => frameFromBuffer(readFileSync(file)));
}

interface Scenario {
  farm: TestFarm;
  sims: SimulatedWorkers;
  /** The scene the next probe reports. */
  scene: SceneInfo;
  /** What each frame uploads. */
  bodies: FrameBody[];
  stats(): { streamed: number; batch: number; streaming: number };
  submit(fields?: Record<string, string>): Promise<Job>;
  /** The job's video checked against the batch encode of its frames folder now; its md5. */
  assertVideoIsBatchEncode(job: Job, frames: number): Promise<string>;
  jobDir(jobId: string): string;
  close(): Promise<void>;
}

async function scenario(opts: { server?: Record<string, unknown>; renderMs?: number; workers?: number; bodies: FrameBody[] }): Promise<Scenario> {
  const farm = await startTestFarm({ server: opts.server as Partial<ServerSettings> });
  const s: Scenario = {
    farm,
    scene: fakeScene(1, FRAMES),
    bodies: opts.bodies,
    sims: undefined as unknown as SimulatedWorkers,
    stats: () => farm.server.farm.videoStats(),
    submit: (fields = {}) => submitJob(farm.server.httpUrl, farm.server.tokens.user!, fakeBlend(), fields),
    jobDir: (jobId) => farm.server.dataDir.jobDir(jobId),
    async assertVideoIsBatchEncode(job, frames) {
      assert.equal(job.state, 'completed', job.error ?? '');
      assert.equal(job.videoReady, true);
      const response = await fetch(`${farm.server.httpUrl}${apiPath('video', { id: job.id })}`);
      assert.equal(response.status, 200);
      const video = path.join(work, `${job.id}.mp4`);
      writeFileSync(video, Buffer.from(await response.arrayBuffer()));
      const reference = await batchEncode(farm.server.dataDir.framesDir(job.id), job.fileExtension ?? 'png', 24, path.join(work, `${job.id}-batch.mp4`));
      assert.equal(md5(video), md5(reference), 'the video is the batch encode of the frames');
      assert.equal((await probeVideo(video)).frames, frames);
      assert.deepEqual(filesMatching(s.jobDir(job.id), /^video\.stream-/), [], 'no streaming output left behind');
      return md5(video);
    },
    async close() {
      await s.sims?.close();
      await farm.close();
    },
  };
  s.sims = await SimulatedWorkers.start({
    wsUrl: `ws://127.0.0.1:${farm.server.wsPort}`,
    httpUrl: farm.server.httpUrl,
    token: farm.server.tokens.worker!,
    count: opts.workers ?? 3,
    renderMs: () => opts.renderMs ?? 60,
    scene: () => s.scene,
    frame: (_jobId, frame) => s.bodies[frame - 1]!,
  });
  return s;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

after(() => rmSync(work, { recursive: true, force: true }));

describe('videos streamed while jobs render (real server, ffmpeg, simulated workers)', () => {
  let s: Scenario;
  let png: FrameBody[];
  before(async () => {
    png = await frameBodies('png', FRAMES, 'png');
    s = await scenario({ bodies: png });
  });
  after(async () => s?.close());

  it('feeds the frames in order as they arrive out of order, and the video is the batch encode', async (t) => {
    const job = await s.submit();
    // Sampled at each accepted upload but the last: how far the stream had got while frames were still missing.
    let fedBeforeLast = 0;
    let accepted = 0;
    s.sims.onFrameAccepted(() => {
      if (++accepted < FRAMES) fedBeforeLast = Math.max(fedBeforeLast, s.farm.server.farm.videoStream(job.id)?.fed ?? 0);
    });
    const done = await waitForJob(s.farm.server, job.id, ['completed', 'failed'], 60_000);
    t.diagnostic(`frames fed before the last one arrived: ${fedBeforeLast} of ${FRAMES}`);
    await s.assertVideoIsBatchEncode(done, FRAMES);
    assert.deepEqual(s.stats(), { streamed: 1, batch: 0, streaming: 0 });
    assert.ok(fedBeforeLast >= FRAMES / 2, `only ${fedBeforeLast} frames were fed before the last arrived`);
  });

  it('a frame replaced after it was fed: the stream is discarded and the video is the batch encode of what is there', async () => {
    const before = s.stats();
    const job = await submitSlowly(s);
    await until(() => (s.farm.server.farm.videoStream(job.id)?.fed ?? 0) >= 5, 30_000, 'five frames fed');
    // As the farm replaces a frame (a late duplicate's commit renames over it): another image, same name.
    const frame2 = path.join(s.farm.server.dataDir.framesDir(job.id), 'frame_0002.png');
    const other = await frameBodies('replacement', 1, 'png', 500);
    writeFileSync(`${frame2}.new`, (other[0] as { body: Buffer }).body);
    renameSync(`${frame2}.new`, frame2);
    const done = await waitForJob(s.farm.server, job.id, ['completed', 'failed'], 60_000);
    const video = await s.assertVideoIsBatchEncode(done, FRAMES);
    assert.deepEqual(s.stats(), { streamed: before.streamed, batch: before.batch + 1, streaming: 0 });
    // The replacement matters: the video of the frames as first fed is another file.
    const original = await makeFrames(path.join(work, 'as-fed'), Array.from({ length: FRAMES }, (_, i) => i + 1), { width: 96, height: 54 });
    assert.notEqual(md5(await batchEncode(original.dir, 'png', 24, path.join(work, 'as-fed.mp4'))), video);
  });

  it('ffmpeg killed mid-stream: the job still completes, its video the batch encode', async () => {
    const before = s.stats();
    const job = await submitSlowly(s);
    await until(() => (s.farm.server.farm.videoStream(job.id)?.fed ?? 0) >= 5, 30_000, 'five frames fed');
    const pid = s.farm.server.farm.videoStream(job.id)!.pid!;
    process.kill(pid, 'SIGKILL');
    await until(() => s.farm.server.farm.videoStream(job.id) === undefined, 30_000, 'the stream given up');
    const done = await waitForJob(s.farm.server, job.id, ['completed', 'failed'], 60_000);
    await s.assertVideoIsBatchEncode(done, FRAMES);
    assert.deepEqual(s.stats(), { streamed: before.streamed, batch: before.batch + 1, streaming: 0 });
  });

  it('a frame ffmpeg cannot decode: the stream notices at the end and the job ends as the batch encode makes it', async () => {
    const before = s.stats();
    const good = s.bodies;
    const broken = Buffer.from((good[9] as { body: Buffer }).body);
    broken.fill(7, 100, broken.length - 20);
    s.bodies = good.map((body, i) => (i === 9 ? frameFromBuffer(broken) : body));
    try {
      const job = await s.submit();
      const done = await waitForJob(s.farm.server, job.id, ['completed', 'failed'], 60_000);
      await s.assertVideoIsBatchEncode(done, FRAMES);
      assert.deepEqual(s.stats(), { streamed: before.streamed, batch: before.batch + 1, streaming: 0 });
    } finally {
      s.bodies = good;
    }
  });

  it('paused mid-stream: ffmpeg stops; resumed, a new stream starts from the first frame; cancelled: nothing is left', async () => {
    const before = s.stats();
    const job = await submitSlowly(s);
    await until(() => (s.farm.server.farm.videoStream(job.id)?.fed ?? 0) >= 3, 30_000, 'three frames fed');
    const first = s.farm.server.farm.videoStream(job.id)!.pid!;
    await postJson(s.farm.server.httpUrl, s.farm.server.tokens.user!, apiPath('pauseJob', { id: job.id }));
    await until(() => !alive(first) && s.farm.server.farm.videoStream(job.id) === undefined, 10_000, 'the stream stopped');
    await postJson(s.farm.server.httpUrl, s.farm.server.tokens.user!, apiPath('resumeJob', { id: job.id }));
    const done = await waitForJob(s.farm.server, job.id, ['completed', 'failed'], 60_000);
    await s.assertVideoIsBatchEncode(done, FRAMES);
    assert.equal(s.stats().streamed, before.streamed + 1, 'the second stream made the video');

    const doomed = await submitSlowly(s);
    await until(() => (s.farm.server.farm.videoStream(doomed.id)?.fed ?? 0) >= 3, 30_000, 'three frames fed');
    const pid = s.farm.server.farm.videoStream(doomed.id)!.pid!;
    await postJson(s.farm.server.httpUrl, s.farm.server.tokens.user!, apiPath('cancelJob', { id: doomed.id }));
    await until(() => !alive(pid), 10_000, 'ffmpeg ended');
    await until(() => filesMatching(s.jobDir(doomed.id), /^video/).length === 0, 10_000, 'its output removed');
    assert.deepEqual(s.stats().streaming, 0);
  });

  it('TIFF frames (ffmpeg cannot stream them) and multilayer EXR (no video) never start a stream', async () => {
    const before = s.stats();
    const streamed: string[] = [];
    const watch = () => {
      for (const id of ids) if (s.farm.server.farm.videoStream(id)) streamed.push(id);
    };
    const ids: string[] = [];
    s.sims.onFrameAccepted(watch);
    const tiffs = await frameBodies('tif', FRAMES, 'tif');
    const png = s.bodies;
    try {
      s.bodies = tiffs;
      s.scene = fakeScene(1, FRAMES, { fileFormat: 'TIFF' });
      const tiff = await s.submit();
      ids.push(tiff.id);
      const tiffDone = await waitForJob(s.farm.server, tiff.id, ['completed', 'failed'], 60_000);
      await s.assertVideoIsBatchEncode(tiffDone, FRAMES);

      s.scene = fakeScene(1, 4, { fileFormat: 'OPEN_EXR_MULTILAYER' });
      const exr = await s.submit();
      ids.push(exr.id);
      const exrDone = await waitForJob(s.farm.server, exr.id, ['completed', 'failed'], 60_000);
      assert.equal(exrDone.state, 'completed', exrDone.error ?? '');
      assert.equal(exrDone.videoReady, false);
      assert.deepEqual(streamed, []);
      assert.deepEqual(s.stats(), { streamed: before.streamed, batch: before.batch + 1, streaming: 0 });
    } finally {
      s.bodies = png;
      s.scene = fakeScene(1, FRAMES);
    }
  });
});

describe('at most video_streams streams at once', () => {
  let s: Scenario;
  before(async () => {
    s = await scenario({ server: { video_streams: 1, queue_policy: 'fair' }, workers: 4, bodies: await frameBodies('limit', 24, 'png') });
    s.scene = fakeScene(1, 24);
  });
  after(async () => s?.close());

  it('two jobs rendering side by side share one streaming encoder; both videos are the batch encodes', async () => {
    const [a, b] = [await s.submit(), await s.submit()];
    let most = 0;
    s.sims.onFrameAccepted(() => (most = Math.max(most, s.stats().streaming)));
    const done = [await waitForJob(s.farm.server, a.id, ['completed', 'failed'], 60_000), await waitForJob(s.farm.server, b.id, ['completed', 'failed'], 60_000)];
    for (const job of done) await s.assertVideoIsBatchEncode(job, 24);
    assert.equal(most, 1, 'one stream at most, and one ran');
    const { streamed, batch } = s.stats();
    assert.equal(streamed + batch, 2);
    assert.ok(streamed >= 1);
  });
});

describe('video_streams = 0', () => {
  let s: Scenario;
  before(async () => {
    s = await scenario({ server: { video_streams: 0 }, bodies: await frameBodies('off', 8, 'png') });
    s.scene = fakeScene(1, 8);
  });
  after(async () => s?.close());

  it('encodes every video at the end', async () => {
    const job = await s.submit();
    const done = await waitForJob(s.farm.server, job.id, ['completed', 'failed'], 60_000);
    await s.assertVideoIsBatchEncode(done, 8);
    assert.deepEqual(s.stats(), { streamed: 0, batch: 1, streaming: 0 });
  });
});

/** A job in frame order whose frames take a while, so a test can act mid-stream. */
function submitSlowly(s: Scenario): Promise<Job> {
  return s.submit({ order: 'sequential', maxWorkers: '1' });
}

describe('the server stopped gracefully mid-stream', () => {
  it('stops its ffmpeg and removes the partial video (a restart starts the stream anew)', async () => {
    const s = await scenario({ bodies: await frameBodies('stop', FRAMES, 'png') });
    try {
      const job = await submitSlowly(s);
      await until(() => (s.farm.server.farm.videoStream(job.id)?.fed ?? 0) >= 3, 30_000, 'three frames fed');
      const pid = s.farm.server.farm.videoStream(job.id)!.pid!;
      await s.sims.close();
      await s.farm.server.close();
      assert.equal(alive(pid), false, 'ffmpeg was stopped with the server');
      assert.deepEqual(filesMatching(s.jobDir(job.id), /^video/), []);
    } finally {
      await s.sims.close();
    }
  });
});

describe('the server killed mid-stream (real server processes)', () => {
  const processes: FarmProcess[] = [];
  let sims: SimulatedWorkers | undefined;
  after(async () => {
    await sims?.close();
    await Promise.all(processes.map((p) => p.stop()));
  });

  it('restarts the stream from the first frame after the restart; the video is the batch encode; the old ffmpeg ends by itself', async () => {
    const bodies = await frameBodies('restart', FRAMES, 'png');
    const root = mkdtempSync(path.join(work, 'restart-'));
    const dataDir = path.join(root, 'server');
    const [port, webPort] = await freePorts(2);
    const ports = { port, webPort };
    const start = () => {
      const server = startServerProcess(dataDir, ports);
      processes.push(server);
      return server;
    };
    const api = new Api(`http://127.0.0.1:${ports.webPort}`);
    const workers = async () =>
      SimulatedWorkers.start({
        wsUrl: `ws://127.0.0.1:${ports.port}`,
        httpUrl: api.baseUrl,
        token: readFileSync(path.join(dataDir, 'worker-token'), 'utf8').trim(),
        count: 1,
        renderMs: () => 100,
        scene: () => fakeScene(1, FRAMES),
        frame: (_jobId, frame) => bodies[frame - 1]!,
      });
    const first = start();
    await first.waitForLog('server listening');
    sims = await workers();
    const job = await api.submit(new Blob([new Uint8Array(fakeBlend())]), { order: 'sequential' });
    await until(async () => (await api.job(job.id)).counts.done >= 10, 30_000, 'ten frames done');
    const orphan = first.logs.find((l) => l.msg === 'video stream started' && l.jobId === job.id)?.pid as number;
    assert.ok(orphan, 'a stream ran before the kill');
    await first.stop('SIGKILL');
    await sims.close();
    // Its ffmpeg reads the end of its input and finishes on its own: no process is left behind.
    await until(() => !alive(orphan), 15_000, 'the killed server\'s ffmpeg to end');

    const restarted = start();
    await restarted.waitForLog('farm state restored');
    sims = await workers();
    const done = await api.waitForJob(job.id, ['completed', 'failed'], 60_000);
    assert.equal(done.state, 'completed', done.error ?? '');
    const started = restarted.logs.find((l) => l.msg === 'video stream started' && l.jobId === job.id);
    assert.ok(started && started.done >= 10, `the new stream began with the frames done before the kill: ${JSON.stringify(started)}`);
    assert.equal(restarted.count('video encoded', (l) => l.jobId === job.id && l.how === 'stream'), 1);

    const video = path.join(root, 'video.mp4');
    writeFileSync(video, Buffer.from(await (await fetch(`${api.baseUrl}${apiPath('video', { id: job.id })}`)).arrayBuffer()));
    const jobDir = path.join(dataDir, 'jobs', job.id);
    assert.equal(md5(video), md5(await batchEncode(path.join(jobDir, 'frames'), 'png', 24, path.join(root, 'batch.mp4'))));
    assert.deepEqual(filesMatching(jobDir, /^video\.stream-/), [], 'the killed server\'s partial video is gone');
  });
});
