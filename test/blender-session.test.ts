import assert from 'node:assert/strict';
import sharp from 'sharp';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import {
  BlenderRenderError,
  BlenderSession,
  probeScene,
  type FrameProgress,
} from '../src/worker/blender/index.ts';
import { BLENDER, assertPixelsEqual, decodeRgba, makeTestScene } from '../testkit/scenes.ts';

const run = promisify(execFile);

/** The reference: one plain Blender process per frame, as a user would run it. */
async function renderWithCli(blendFile: string, pattern: string, frame: number): Promise<void> {
  await run(BLENDER, ['-b', blendFile, '-o', pattern, '-F', 'PNG', '-f', String(frame)], {
    timeout: 60_000,
    maxBuffer: 16 * 1024 * 1024,
  });
}

function startSession(blendFile: string, overrides = {}) {
  return BlenderSession.start({ blenderPath: BLENDER, blendFile, threads: 0, allowScripts: false, overrides });
}

describe('Blender session and probe (real Blender)', () => {
  let workDir: string;
  let scene: string;
  let denoiseScene: string;

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'archenland-session-test-'));
    scene = await makeTestScene({ frames: '1-3', width: 64, height: 48, samples: 4 });
    denoiseScene = await makeTestScene({ frames: '1-3', width: 64, height: 48, samples: 4, denoise: true });
  });

  after(async () => {
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it('renders frames pixel-identical to `blender -b -f N`, one at a time, with progress', async (t) => {
    const frames = [1, 2, 3];
    const cliStarted = performance.now();
    const cliDone = Promise.all(frames.map((f) => renderWithCli(scene, join(workDir, 'cli_####'), f))).then(
      () => performance.now() - cliStarted,
    );

    const started = performance.now();
    const session = await startSession(scene);
    const startMs = performance.now() - started;
    const progress: FrameProgress[] = [];
    try {
      // Requested all at once: the session must serialize them.
      const results = await Promise.all(
        frames.map((f) => session.render(f, join(workDir, 'session_####'), (p) => progress.push(p))),
      );
      t.diagnostic(`session start ${startMs.toFixed(0)} ms, frames ${results.map((r) => r.renderMs).join('/')} ms`);

      for (const [i, result] of results.entries()) {
        const frame = frames[i];
        assert.equal(result.frame, frame);
        assert.equal(result.path, join(workDir, `session_${String(frame).padStart(4, '0')}.png`));
        assert.match(result.log, new RegExp(`^Fra:${frame} .*\\| Sample 4/4$`, 'm'));
        assert.match(result.log, /^Saved: '/m);
        assert.doesNotMatch(result.log, /@@ARCHENLAND/);

        const mine = progress.filter((p) => p.frame === frame).map((p) => p.done);
        assert.ok(mine.length >= 2, `frame ${frame}: progress ${JSON.stringify(mine)}`);
        for (let k = 1; k < mine.length; k++) assert.ok(mine[k] > mine[k - 1], `frame ${frame}: ${mine}`);
        assert.equal(mine.at(-1), 4);
        assert.ok(progress.filter((p) => p.frame === frame).every((p) => p.total === 4));
      }
      // Serialized: all of frame 1's progress comes before frame 2's, and so on.
      const order = progress.map((p) => p.frame);
      assert.deepEqual(order, [...order].sort((a, b) => a - b));

      t.diagnostic(`3 separate blender -b -f N processes (run in parallel): ${(await cliDone).toFixed(0)} ms`);
      for (const frame of frames) {
        const name = `_${String(frame).padStart(4, '0')}.png`;
        const [mine, reference] = await Promise.all([
          decodeRgba(join(workDir, `session${name}`)),
          decodeRgba(join(workDir, `cli${name}`)),
        ]);
        assertPixelsEqual(mine, reference, `frame ${frame}`);
      }
      // The scene moves: consecutive frames must differ, or the comparison proves little.
      const [one, two] = await Promise.all([
        decodeRgba(join(workDir, 'session_0001.png')),
        decodeRgba(join(workDir, 'session_0002.png')),
      ]);
      assert.ok(!one.data.equals(two.data), 'frames 1 and 2 are identical: the test scene does not move');
    } finally {
      await session.close();
    }
    assert.equal(session.alive, false);
    await assert.rejects(session.render(1, join(workDir, 'late_####')), /cannot render frame 1/);
  });

  it('applies overrides and rejects a frame when Blender dies mid-render', async () => {
    const session = await startSession(scene, {
      resolutionPercentage: 50,
      samples: 2,
      fileFormat: 'JPEG',
      engine: null, // null keeps the scene's own engine (Cycles)
    });
    try {
      const totals: number[] = [];
      const result = await session.render(2, join(workDir, 'half_####'), (p) => totals.push(p.total));
      assert.equal(result.path, join(workDir, 'half_0002.jpg'));
      const image = await decodeRgba(result.path);
      assert.deepEqual([image.width, image.height], [32, 24]);
      assert.ok(totals.length > 0 && totals.every((total) => total === 2), `totals ${totals}`);

      // Kill on the first progress line, so Blender is truly in the middle of the frame.
      const dying = session.render(3, join(workDir, 'killed_####'), () => session.kill());
      await assert.rejects(dying, (error: Error) => {
        assert.ok(error instanceof BlenderRenderError);
        assert.match(error.message, /Blender exited \(signal SIGKILL\) while rendering frame 3/);
        return true;
      });
      assert.equal(session.alive, false);
    } finally {
      await session.close();
    }
  });

  it("reports Cycles denoising failure with Blender's message and keeps serving", async () => {
    const session = await startSession(denoiseScene);
    try {
      for (const frame of [1, 2]) {
        await assert.rejects(session.render(frame, join(workDir, 'denoise_####')), (error: Error) => {
          assert.ok(error instanceof BlenderRenderError);
          assert.match(error.message, /Build without OpenImageDenoise/);
          assert.equal(error.frame, frame);
          assert.match(error.log, new RegExp(`^Fra:${frame} .*Build without OpenImageDenoise`, 'm'));
          return true;
        });
        assert.equal(session.alive, true, 'a failed frame must not end the session');
      }
    } finally {
      await session.close();
    }
  });

  it('rejects start() clearly for a file that is not a .blend', async () => {
    const notBlend = join(workDir, 'not-a-scene.blend');
    await writeFile(notBlend, 'hello, I am text\n');
    await assert.rejects(startSession(notBlend), (error: Error) => {
      assert.match(error.message, /before loading .*not-a-scene\.blend/);
      assert.match(error.message, /Error: File format is not supported/);
      return true;
    });
  });

  it('rejects start() clearly for an override Blender refuses', async () => {
    await assert.rejects(startSession(scene, { engine: 'NO_SUCH_ENGINE' }), /could not apply overrides: .*NO_SUCH_ENGINE/);
  });

  it('a session probes the scene it loaded exactly as probeScene does, then renders it with the overrides configure applies', async () => {
    const session = await startSession(scene);
    try {
      const [inSession, alone] = await Promise.all([session.probe(), probeScene({ blenderPath: BLENDER, blendFile: scene, allowScripts: false })]);
      assert.deepEqual(inSession, alone);
      await session.configure({ resolutionPercentage: 50 });
      const result = await session.render(1, join(workDir, 'configured', 'frame_####'));
      const { width, height } = await sharp(result.path).metadata();
      assert.deepEqual([width, height], [alone.resolutionX / 2, alone.resolutionY / 2], 'the override applies to the next frame');
      await assert.rejects(session.configure({ engine: 'NO_SUCH_ENGINE' }), /could not apply overrides: .*NO_SUCH_ENGINE/);
      assert.ok(session.alive, 'a refused configure leaves the session serving');
    } finally {
      await session.close();
    }
  });

  it("probeScene reports the generated scene's settings", async () => {
    const [info, denoiseInfo] = await Promise.all([
      probeScene({ blenderPath: BLENDER, blendFile: scene, allowScripts: false }),
      probeScene({ blenderPath: BLENDER, blendFile: denoiseScene, allowScripts: false }),
    ]);
    assert.match(info.blenderVersion, /^\d+\.\d+/);
    assert.deepEqual(
      { ...info, blenderVersion: undefined },
      {
        frameStart: 1,
        frameEnd: 3,
        frameStep: 1,
        fps: 24,
        resolutionX: 64,
        resolutionY: 48,
        resolutionPercentage: 100,
        engine: 'CYCLES',
        fileFormat: 'PNG',
        samples: 4,
        denoising: false,
        blenderVersion: undefined,
        sceneName: 'Scene',
        tileBlockers: [],
        problems: [],
        savedWith: '3.4',
      },
    );
    assert.equal(denoiseInfo.denoising, true);
  });

  it('probeScene rejects a non-blend file with Blender\'s error line', async () => {
    const notBlend = join(workDir, 'probe-not-a-scene.blend');
    await writeFile(notBlend, 'plain text\n');
    await assert.rejects(
      probeScene({ blenderPath: BLENDER, blendFile: notBlend, allowScripts: false }),
      /Could not read scene .*probe-not-a-scene\.blend: Error: File format is not supported/,
    );
  });
});
