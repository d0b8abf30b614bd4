/**
 * Stereo renders bring back both eyes (issue #14 §3): with each view saved as a file of
 * its own, the left eye is the frame (thumbnails, video) and both eyes come back among
 * the frame's passes, pixel-identical to Blender rendering the file by hand. A view
 * suffix from the .blend cannot place a file outside the frame's folder.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { apiPath, type FramePass, type Job } from '../src/protocol/index.ts';
import { startTestFarm, submitBlend, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { assertPixelsEqual, BLENDER, decodeRgba, makeTestScene } from '../testkit/scenes.ts';

const run = promisify(execFile);

describe('stereo renders come back with both eyes', () => {
  let farm: TestFarm;
  let root: string;
  const get = (urlPath: string) => fetch(`${farm.server.httpUrl}${urlPath}`, { headers: { authorization: `Bearer ${farm.server.tokens.user!}` } });
  const download = async (urlPath: string, file: string) => {
    const response = await get(urlPath);
    assert.equal(response.status, 200, urlPath);
    writeFileSync(file, Buffer.from(await response.arrayBuffer()));
    return file;
  };
  const render = async (scene: string): Promise<Job> => {
    const submitted = await submitBlend(farm.server.httpUrl, new Blob([readFileSync(scene)]), { frames: '1-2' });
    assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    return waitForJob(farm.server, submitted.body.id, ['completed', 'failed'], 180_000);
  };

  before(async () => {
    root = mkdtempSync(path.join(os.tmpdir(), 'archenland-stereo-'));
    farm = await startTestFarm({ workers: 1 });
  });
  after(async () => {
    await farm?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('the left eye is the frame, and both eyes are passes identical to a render by hand', async () => {
    const scene = await makeTestScene({ frames: '1-2', width: 48, height: 36, samples: 4, stereo: '_R' });
    const job = await render(scene);
    assert.equal(job.state, 'completed', job.error ?? '');
    assert.equal(job.videoReady, true, 'the video is made of the left eye');
    assert.ok(job.tiling.blockers.some((reason) => /several views \(stereo\)/.test(reason)), 'stereo frames are never split into tiles');

    const passes = (await (await get(apiPath('framePasses', { id: job.id, frame: 1 }))).json()) as FramePass[];
    assert.deepEqual(passes.map((pass) => pass.name), ['views/frame_0001_L.png', 'views/frame_0001_R.png']);

    const byHand = path.join(root, 'by-hand');
    mkdirSync(byHand);
    copyFileSync(scene, path.join(byHand, 'scene.blend'));
    await run(BLENDER, ['-b', path.join(byHand, 'scene.blend'), '-o', path.join(byHand, 'frame_####'), '-f', '1'], { timeout: 120_000, maxBuffer: 32 * 1024 * 1024 });
    const left = await decodeRgba(path.join(byHand, 'frame_0001_L.png'));
    const right = await decodeRgba(path.join(byHand, 'frame_0001_R.png'));
    assert.ok(!left.data.equals(right.data), 'the eyes see different images');

    assertPixelsEqual(await decodeRgba(await download(apiPath('frameFile', { id: job.id, frame: 1 }), path.join(root, 'frame.png'))), left, 'the frame');
    const farmLeft = await download(apiPath('passFile', { id: job.id, frame: 1, name: 'views/frame_0001_L.png' }), path.join(root, 'left.png'));
    const farmRight = await download(apiPath('passFile', { id: job.id, frame: 1, name: 'views/frame_0001_R.png' }), path.join(root, 'right.png'));
    assertPixelsEqual(await decodeRgba(farmLeft), left, 'left eye');
    assertPixelsEqual(await decodeRgba(farmRight), right, 'right eye');
  });

  it('a view suffix that climbs out of the folder is replaced, and nothing is written outside', async () => {
    const scene = await makeTestScene({ frames: '1-2', width: 32, height: 24, samples: 2, stereo: '_R/../../../../escaped' });
    const before = new Set(readdirSync(farm.root, { recursive: true }).map(String));
    const job = await render(scene);
    assert.equal(job.state, 'completed', job.error ?? '');
    const passes = (await (await get(apiPath('framePasses', { id: job.id, frame: 2 }))).json()) as FramePass[];
    assert.deepEqual(passes.map((pass) => pass.name), ['views/frame_0002_L.png', 'views/frame_0002_view1.png']);
    const escaped = readdirSync(farm.root, { recursive: true }).map(String).filter((name) => !before.has(name) && /escaped/.test(name));
    assert.deepEqual(escaped, []);
    assert.equal(existsSync(path.join(os.tmpdir(), 'escaped0001.png')), false);
  });
});
