/**
 * Encoding a video while its frames arrive (src/encoder/stream.ts) with the real ffmpeg:
 * the streamed video must be byte for byte the batch encode's (src/encoder/ffmpeg.ts) of
 * the same frames, and every way it can fail must say so. Then the pure rules of
 * src/farm/video-plan.ts.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { VideoStream } from '../src/encoder/index.ts';
import { identityOf, isBatchInput, nextToFeed, whyNotStreamable, whyStreamDiffers, type FedFrame, type FileIdentity, type StreamCheck } from '../src/farm/video-plan.ts';
import { batchEncode, decodedFrameHashes, makeFrames, md5, probeVideo } from './helpers/video.ts';

const work = mkdtempSync(path.join(os.tmpdir(), 'archenland-video-stream-'));
after(() => rmSync(work, { recursive: true, force: true }));
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('a video streamed to ffmpeg frame by frame', () => {
  const cases = [
    { name: '8-bit PNG', extension: 'png' as const, width: 96, height: 54 },
    { name: '16-bit PNG of odd size (padded)', extension: 'png' as const, width: 67, height: 35, pixelFormat: 'rgb48be' },
    { name: 'JPEG', extension: 'jpg' as const, width: 96, height: 54 },
  ];
  for (const c of cases) {
    it(`is byte for byte the batch encode of the same frames: ${c.name}`, async () => {
      const dir = path.join(work, c.name.replace(/\W+/g, '-'));
      const frames = await makeFrames(path.join(dir, 'frames'), Array.from({ length: 30 }, (_, i) => i + 1), c);
      const streamed = path.join(dir, 'streamed.mp4');
      const stream = VideoStream.open({ ffmpegPath: 'ffmpeg', extension: c.extension, fps: 25, output: streamed });
      // In bursts with pauses, as a farm's frames come: ffmpeg waits on its input between them.
      for (const [i, file] of frames.files.entries()) {
        const fed = await stream.append(file);
        assert.deepEqual(identityOf(fed), identityOf(statSync(file, { bigint: true })), 'append reports the file it fed');
        if (i % 10 === 9) await pause(150);
      }
      assert.deepEqual(await stream.finish(), { frames: 30 });
      const batch = await batchEncode(frames.dir, c.extension, 25, path.join(dir, 'batch.mp4'));

      assert.equal(md5(streamed), md5(batch), 'the same file');
      // x264 writes its settings into the video: the short look-ahead that keeps the wait
      // after the last frame short (src/encoder/ffmpeg.ts) is in both.
      for (const video of [streamed, batch]) assert.match(readFileSync(video, 'latin1'), / rc_lookahead=10 /);
      assert.deepEqual(await probeVideo(streamed), { frames: 30, codec: 'h264', pixelFormat: 'yuv420p', rate: '25/1' });
      assert.deepEqual(await decodedFrameHashes(streamed), await decodedFrameHashes(batch));
    });
  }

  it('fails when ffmpeg is killed mid-stream, and says so', async () => {
    const dir = path.join(work, 'killed');
    const frames = await makeFrames(path.join(dir, 'frames'), [1, 2, 3, 4], { width: 64, height: 36 });
    const output = path.join(dir, 'out.mp4');
    const stream = VideoStream.open({ ffmpegPath: 'ffmpeg', extension: 'png', fps: 24, output });
    await stream.append(frames.files[0]!);
    process.kill(stream.pid!, 'SIGKILL');
    await assert.rejects(
      (async () => {
        for (let i = 0; i < 200; i++) await stream.append(frames.files[1]!);
      })(),
      /ffmpeg was killed by SIGKILL/,
    );
    await assert.rejects(stream.finish(), /ffmpeg was killed by SIGKILL/);
    await stream.abort();
    assert.equal(existsSync(output), false, 'abort leaves no file');
  });

  it('fails the frame, not ffmpeg, when a frame file cannot be read', async () => {
    const dir = path.join(work, 'missing');
    const frames = await makeFrames(path.join(dir, 'frames'), [1, 2], { width: 64, height: 36 });
    const stream = VideoStream.open({ ffmpegPath: 'ffmpeg', extension: 'png', fps: 24, output: path.join(dir, 'out.mp4') });
    await assert.rejects(stream.append(path.join(dir, 'frames', 'frame_0009.png')), /ENOENT/);
    for (const file of frames.files) await stream.append(file);
    assert.deepEqual(await stream.finish(), { frames: 2 });
  });

  it('fails when ffmpeg cannot decode a frame, wherever it is (the batch encode handles such frames its own way)', async () => {
    const dir = path.join(work, 'corrupt');
    const frames = await makeFrames(path.join(dir, 'frames'), [1, 2, 3, 4, 5, 6], { width: 64, height: 36 });
    const good = readFileSync(frames.files[0]!);
    const corruptions = {
      'cut short, then noise': Buffer.concat([good.subarray(0, 200), Buffer.alloc(5000, 7)]),
      // Every chunk in place, the image data scrambled: the parser keeps its place, the decoder fails.
      'bad image data': Buffer.from(good.map((byte, i) => (i > 60 && i < good.length - 20 ? byte ^ 0x5a : byte))),
    };
    for (const [name, bytes] of Object.entries(corruptions)) {
      for (const at of [0, 2, 5]) {
        writeFileSync(path.join(dir, 'bad.png'), bytes);
        const stream = VideoStream.open({ ffmpegPath: 'ffmpeg', extension: 'png', fps: 24, output: path.join(dir, 'out.mp4') });
        for (const [i, file] of frames.files.entries()) await stream.append(i === at ? path.join(dir, 'bad.png') : file);
        await assert.rejects(stream.finish(), /ffmpeg (exited with code|encoded \d+ frames of the 6|duplicated or dropped|reported)/, `${name}, frame ${at + 1}`);
      }
    }
  });

  it('fails when ffmpeg cannot be started, or cannot write the video', async () => {
    const dir = path.join(work, 'unstartable');
    const frames = await makeFrames(path.join(dir, 'frames'), [1], { width: 64, height: 36 });
    const missing = VideoStream.open({ ffmpegPath: path.join(dir, 'no-ffmpeg-here'), extension: 'png', fps: 24, output: path.join(dir, 'a.mp4') });
    await pause(100);
    await assert.rejects(missing.append(frames.files[0]!), /could not run ffmpeg/);
    const unwritable = VideoStream.open({ ffmpegPath: 'ffmpeg', extension: 'png', fps: 24, output: path.join(dir, 'no-such-folder', 'b.mp4') });
    await unwritable.append(frames.files[0]!).catch(() => undefined);
    await assert.rejects(unwritable.finish(), /ffmpeg exited with code 1/);
  });

  it('refuses formats ffmpeg cannot split from a stream', () => {
    assert.throws(() => VideoStream.open({ ffmpegPath: 'ffmpeg', extension: 'exr', fps: 24, output: path.join(work, 'x.mp4') }), /exr frames cannot be streamed/);
  });
});

describe('the rules of streaming (video-plan, pure)', () => {
  it('streams PNG and JPEG jobs whose frame names sort in frame order', () => {
    assert.equal(whyNotStreamable([1, 2, 3], 'png'), null);
    assert.equal(whyNotStreamable([1, 5, 9], 'jpg'), null);
    assert.equal(whyNotStreamable([10000, 10001], 'png'), null);
    assert.match(whyNotStreamable([1, 2], 'tif')!, /cannot read TIF frames from a stream/);
    assert.match(whyNotStreamable([1, 2], 'exr')!, /cannot read EXR/);
    assert.match(whyNotStreamable([-2, -1, 0, 1], 'png')!, /negative frame numbers/);
    assert.match(whyNotStreamable([9998, 9999, 10000], 'png')!, /different numbers of digits/);
    assert.match(whyNotStreamable([], 'png')!, /no frames/);
  });

  it('feeds the next frame in frame order once it is done, never past a gap', () => {
    const order = [1, 2, 3, 4, 5];
    assert.equal(nextToFeed(order, 0, new Set([5, 3])), undefined, 'interleaved: 1 not in yet');
    assert.equal(nextToFeed(order, 0, new Set([1, 5, 3])), 1);
    assert.equal(nextToFeed(order, 1, new Set([1, 5, 3])), undefined, '2 is missing');
    assert.equal(nextToFeed(order, 2, new Set([1, 2, 3, 5])), 3);
    assert.equal(nextToFeed(order, 5, new Set(order)), undefined, 'all fed');
  });

  it('takes the files the batch glob frame_*.EXT takes', () => {
    assert.equal(isBatchInput('frame_0001.png', 'png'), true);
    assert.equal(isBatchInput('frame_.png', 'png'), true);
    assert.equal(isBatchInput('frame_0001.png', 'jpg'), false);
    assert.equal(isBatchInput('.frame_0001.png.1a2b.stitching', 'png'), false);
    assert.equal(isBatchInput('frame_0001.png.partial', 'png'), false);
  });

  const id = (ino: number, ctime = 1000): FileIdentity => ({ dev: 1n, ino: BigInt(ino), size: 10n, mtimeNs: 5n, ctimeNs: BigInt(ctime) });
  const fed: FedFrame[] = [1, 2, 3].map((n) => ({ number: n, name: `frame_000${n}.png`, identity: id(n) }));
  const good: StreamCheck = {
    fed,
    frames: [1, 2, 3],
    done: [1, 2, 3],
    encoded: 3,
    folder: ['frame_0003.png', 'frame_0001.png', 'frame_0002.png', '.frame_0002.png.x.stitching'],
    extension: 'png',
    now: new Map(fed.map((f) => [f.name, f.identity])),
  };

  it('accepts a stream fed exactly the batch inputs, unchanged', () => {
    assert.equal(whyStreamDiffers(good), null);
  });

  it('rejects a stream whenever the batch encode could differ', () => {
    const replaced = new Map(good.now);
    replaced.set('frame_0002.png', id(99));
    const touched = new Map(good.now);
    touched.set('frame_0001.png', id(1, 2000));
    const gone = new Map(good.now);
    gone.set('frame_0003.png', null);
    const cases: Array<[Partial<StreamCheck>, RegExp]> = [
      [{ now: replaced }, /frame 2 was replaced after it was fed/],
      [{ now: touched }, /frame 1 was replaced/],
      [{ now: gone }, /frame 3 was replaced/],
      [{ done: [1, 2] }, /done frames are not the frames/],
      [{ fed: fed.slice(0, 2) }, /2 of 3 frames were fed/],
      [{ fed: [fed[0]!, fed[2]!, fed[1]!] }, /out of order/],
      [{ encoded: 2 }, /ffmpeg encoded 2 of 3/],
      [{ folder: [...good.folder, 'frame_0004.png'] }, /other files than those fed/],
      [{ folder: ['frame_0001.png', 'frame_0002.png'] }, /other files than those fed/],
    ];
    for (const [change, reason] of cases) assert.match(whyStreamDiffers({ ...good, ...change }) ?? 'accepted', reason);
  });
});
