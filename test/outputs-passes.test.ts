/**
 * Every output kept (issue #14 §3): the compositor's File Output passes are uploaded with
 * their frame, listed per frame, downloadable one by one and in frames.zip, and identical
 * to what Blender writes when it renders the same file by hand.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { apiPath, type FramePass } from '../src/protocol/index.ts';
import { startTestFarm, submitBlend, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { assertPixelsEqual, BLENDER, decodeRgba, makeHostileScene, makeTestScene } from '../testkit/scenes.ts';

const run = promisify(execFile);

describe('File Output passes come back with their frames', () => {
  let farm: TestFarm;
  let root: string;
  let jobId: string;
  const get = (urlPath: string) => fetch(`${farm.server.httpUrl}${urlPath}`, { headers: { authorization: `Bearer ${farm.server.tokens.user!}` } });

  before(async () => {
    root = mkdtempSync(path.join(os.tmpdir(), 'archenland-passes-'));
    const outside = path.join(root, 'outside');
    mkdirSync(path.join(root, 'original'));
    const scene = await makeHostileScene(path.join(root, 'original', 'scene.blend'), { fileOutputsOutside: outside });
    farm = await startTestFarm({ workers: 1 });
    const submitted = await submitBlend(farm.server.httpUrl, new Blob([readFileSync(scene)]));
    assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    jobId = submitted.body.id;
    const job = await waitForJob(farm.server, jobId, ['completed', 'failed'], 180_000);
    assert.equal(job.state, 'completed', job.error ?? '');
  });
  after(async () => {
    await farm?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('lists each frame\'s passes by name, from the compositor and from inside node groups', async () => {
    for (const frame of [1, 2]) {
      const response = await get(apiPath('framePasses', { id: jobId, frame }));
      assert.equal(response.status, 200);
      const names = ((await response.json()) as FramePass[]).map((pass) => pass.name);
      assert.deepEqual(names, [
        `compositor/Beside blend/rel_000${frame}.png`,
        `compositor/Multilayer/multi_000${frame}.exr`,
        `compositor/Outside/abs_000${frame}.png`,
        `group-Hidden passes/In group/escape_000${frame}.png`,
      ]);
    }
  });

  it('each pass is pixel-identical to the one Blender writes when rendering the file by hand', async () => {
    // By hand: the original paths, "//passes/" beside the .blend and the absolute folder.
    const local = path.join(root, 'local');
    mkdirSync(local, { recursive: true });
    copyFileSync(path.join(root, 'original', 'scene.blend'), path.join(local, 'scene.blend'));
    await run(BLENDER, ['-b', path.join(local, 'scene.blend'), '-Y', '-f', '1'], { timeout: 120_000, maxBuffer: 32 * 1024 * 1024 });
    const pairs: Array<[string, string]> = [
      ['compositor/Beside blend/rel_0001.png', path.join(local, 'passes', 'rel_0001.png')],
      ['compositor/Outside/abs_0001.png', path.join(root, 'outside', 'abs_0001.png')],
    ];
    for (const [name, byHand] of pairs) {
      const response = await get(apiPath('passFile', { id: jobId, frame: 1, name }));
      assert.equal(response.status, 200, name);
      const farmCopy = path.join(root, 'farm-pass.png');
      writeFileSync(farmCopy, Buffer.from(await response.arrayBuffer()));
      assertPixelsEqual(await decodeRgba(farmCopy), await decodeRgba(byHand), name);
    }
  });

  it('frames.zip holds the passes under passes/<frame>/', async () => {
    const response = await get(apiPath('framesZip', { id: jobId }));
    assert.equal(response.status, 200);
    const zip = path.join(root, 'frames.zip');
    writeFileSync(zip, Buffer.from(await response.arrayBuffer()));
    const { stdout } = await run('python3', ['-c', 'import sys, zipfile; print("\\n".join(sorted(zipfile.ZipFile(sys.argv[1]).namelist())))', zip]);
    const names = stdout.trim().split('\n');
    assert.ok(names.includes('frame_0001.png') && names.includes('frame_0002.png'), names.join(', '));
    assert.ok(names.includes('passes/frame_0001/compositor/Beside blend/rel_0001.png'), names.join(', '));
    assert.ok(names.includes('passes/frame_0002/group-Hidden passes/In group/escape_0002.png'), names.join(', '));
  });

  it('a name that is not a listed pass is refused, and nothing outside the passes is served', async () => {
    const unknown = await get(apiPath('passFile', { id: jobId, frame: 1, name: 'compositor/nothing.png' }));
    assert.equal(unknown.status, 404);
    assert.equal(((await unknown.json()) as { code: string }).code, 'PASS_NOT_FOUND');
    const climbing = await get(`/api/jobs/${jobId}/frames/1/passes/..%2F..%2Fframes%2Fframe_0001.png`);
    assert.equal(climbing.status, 400);
  });

  it('a multilayer EXR job keeps each frame whole and completes without a video, saying why', async () => {
    const scene = await makeTestScene({ frames: '1-2', width: 32, height: 24, samples: 1, format: 'OPEN_EXR_MULTILAYER' });
    const submitted = await submitBlend(farm.server.httpUrl, new Blob([readFileSync(scene)]));
    assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    const job = await waitForJob(farm.server, submitted.body.id, ['completed', 'failed'], 180_000);
    assert.equal(job.state, 'completed', job.error ?? '');
    assert.equal(job.videoReady, false);
    assert.match(job.notice ?? '', /no video: the frames are multilayer EXR/);
    const frame = Buffer.from(await (await get(apiPath('frameFile', { id: job.id, frame: 2 }))).arrayBuffer());
    assert.equal(frame.readUInt32LE(0), 20000630, 'an OpenEXR file');
    assert.ok(frame.includes('ViewLayer.Combined.R'), 'the layer\'s passes by name, as Blender writes multilayer EXR');
  });

  it('the worker keeps nothing of the frames once they are uploaded', () => {
    const output = path.join(farm.root, 'worker1', 'output', jobId);
    const left = readdirSync(output, { recursive: true }).filter((name) => !String(name).endsWith('/'));
    assert.deepEqual(left, []);
  });
});
