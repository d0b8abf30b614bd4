import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { openAsBlob } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { JobDetail, Worker } from '../src/protocol/index.ts';
import { startTestFarm, submitBlend, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { BLENDER, assertPixelsEqual, decodeRgba, makeTestScene } from '../testkit/scenes.ts';

const run = promisify(execFile);
const FRAMES = [1, 2, 3, 4, 5, 6];

describe('the farm end to end: server, two workers, real Blender and ffmpeg', () => {
  let farm: TestFarm;
  let scene: string;
  let job: JobDetail;
  let work: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'archenland-e2e-'));
    scene = await makeTestScene({ frames: '1-6', width: 64, height: 48, samples: 4, fps: 12 });
    // Tail copies off: with frames this small, one worker could otherwise finish them all
    // while the other is still starting Blender, and this test checks the spread.
    farm = await startTestFarm({ workers: 2, server: { tail_duplicates: false } });
    const submitted = await submitBlend(farm.server.httpUrl, await openAsBlob(scene));
    assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    assert.equal(submitted.body.state, 'probing');
    const finished = await waitForJob(farm.server, submitted.body.id, ['completed', 'failed', 'cancelled']);
    assert.equal(finished.state, 'completed', `job ended ${finished.state}: ${finished.error}`);
    job = (await (await fetch(`${farm.server.httpUrl}/api/jobs/${finished.id}`)).json()) as JobDetail;
  });

  after(async () => {
    await farm?.close();
  });

  it('reads the frame range and fps from the .blend itself', () => {
    assert.deepEqual(job.frames, { start: 1, end: 6, step: 1 });
    assert.equal(job.fps, 12);
    assert.equal(job.scene?.engine, 'CYCLES');
    assert.deepEqual([job.scene?.resolutionX, job.scene?.resolutionY], [64, 48]);
  });

  it('renders every frame exactly once, spread over both workers', async () => {
    assert.deepEqual(job.counts, { total: 6, queued: 0, rendering: 0, done: 6, failed: 0 });
    assert.deepEqual(job.frameList.map((f) => [f.number, f.state]), FRAMES.map((n) => [n, 'done']));
    const workers = (await (await fetch(`${farm.server.httpUrl}/api/workers`)).json()) as Worker[];
    assert.equal(workers.length, 2);
    assert.equal(workers.reduce((sum, w) => sum + w.framesRendered, 0), 6);
    for (const w of workers) assert.ok(w.framesRendered >= 1, `${w.name} rendered no frame`);
  });

  it('serves frames pixel-identical to plain `blender -b -f N` renders', async () => {
    const args = ['-b', scene, '-o', join(work, 'ref_####'), '-F', 'PNG'];
    for (const frame of FRAMES) args.push('-f', String(frame));
    await run(BLENDER, args, { timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
    for (const frame of FRAMES) {
      const response = await fetch(`${farm.server.httpUrl}/api/jobs/${job.id}/frames/${frame}`);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('content-type'), 'image/png');
      const served = join(work, `served_${frame}.png`);
      await writeFile(served, Buffer.from(await response.arrayBuffer()));
      const reference = join(work, `ref_${String(frame).padStart(4, '0')}.png`);
      assertPixelsEqual(await decodeRgba(served), await decodeRgba(reference), `frame ${frame}`);
    }
  });

  it('encodes an H.264 MP4 with every frame at the scene fps', async () => {
    const response = await fetch(`${farm.server.httpUrl}/api/jobs/${job.id}/video`);
    assert.equal(response.status, 200);
    const video = join(work, 'video.mp4');
    await writeFile(video, Buffer.from(await response.arrayBuffer()));
    const { stdout } = await run('ffprobe', [
      '-v', 'error', '-count_frames', '-select_streams', 'v:0',
      '-show_entries', 'stream=codec_name,pix_fmt,nb_read_frames,r_frame_rate', '-of', 'json', video,
    ]);
    const [stream] = JSON.parse(stdout).streams;
    assert.deepEqual(stream, { codec_name: 'h264', pix_fmt: 'yuv420p', r_frame_rate: '12/1', nb_read_frames: '6' });
  });

  it('offers a zip of all frames', async () => {
    const response = await fetch(`${farm.server.httpUrl}/api/jobs/${job.id}/frames.zip`);
    assert.equal(response.status, 200);
    const zip = Buffer.from(await response.arrayBuffer());
    // The end-of-central-directory record (last 22 bytes, no comment) counts the entries.
    const eocd = zip.subarray(zip.length - 22);
    assert.equal(eocd.readUInt32LE(0), 0x06054b50);
    assert.equal(eocd.readUInt16LE(10), 6);
    assert.ok(zip.includes(Buffer.from('frame_0006.png')));
  });

  it('lists the job with its counts', async () => {
    const jobs = (await (await fetch(`${farm.server.httpUrl}/api/jobs`)).json()) as JobDetail[];
    assert.equal(jobs.length, 1);
    assert.equal(jobs[0]!.state, 'completed');
    assert.equal(jobs[0]!.videoReady, true);
  });
});
