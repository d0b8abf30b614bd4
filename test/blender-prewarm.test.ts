import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { openAsBlob } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path, { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { workerSchema } from '../src/config/index.ts';
import { BlenderLauncher, BlenderSession, type SceneOverrides } from '../src/worker/blender/index.ts';
import { RenderWorker } from '../src/worker/index.ts';
import { startTestFarm, submitBlend, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { until } from './helpers/processes.ts';
import { BLENDER, assertPixelsEqual, decodeRgba, makeTestScene } from '../testkit/scenes.ts';

const run = promisify(execFile);

/** The reference: `blender -b file [-y|-Y] -o … -F PNG -f N`, as a user would run it. */
async function renderWithCli(blendFile: string, pattern: string, frame: number, allowScripts = false): Promise<string> {
  await run(BLENDER, ['-b', blendFile, allowScripts ? '-y' : '-Y', '-o', pattern, '-F', 'PNG', '-f', String(frame)], {
    timeout: 60_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  return pattern.replace('####', String(frame).padStart(4, '0')) + '.png';
}

async function openWarm(blendFile: string, allowScripts = false, overrides: SceneOverrides = {}): Promise<BlenderSession> {
  const session = BlenderSession.prewarm({ blenderPath: BLENDER, threads: 0 });
  try {
    await session.untilWarm();
    await session.open({ blendFile, allowScripts, overrides });
  } catch (error) {
    session.kill();
    throw error;
  }
  return session;
}

/** Log records kept in memory, so a test can check what the worker decided and why. */
function capturingLogger() {
  const records: Array<Record<string, any>> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void records.push(JSON.parse(line)) });
  const find = (msg: string) => records.filter((r) => r.msg === msg);
  return { logger, records, find };
}

/** Blender sessions this test process started (children running blender/session.py). */
function sessionProcesses(): Array<{ pid: number; prewarmed: boolean }> {
  const out = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)]).toString();
  return out
    .split('\n')
    .filter((line) => line.includes('session.py'))
    .map((line) => ({ pid: Number(line.trim().split(/\s+/)[0]), prewarmed: line.includes('--prewarmed') }));
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('pre-warmed Blender session (real Blender)', () => {
  let workDir: string;
  let scene: string;

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'archenland-prewarm-test-'));
    scene = await makeTestScene({ frames: '1-3', width: 64, height: 48, samples: 4 });
  });

  after(async () => {
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it('renders pixel-identical to `blender -b -f N` once open() has loaded the scene', async () => {
    const frames = [1, 2];
    const references = Promise.all(frames.map((f) => renderWithCli(scene, join(workDir, 'cli_####'), f)));
    const session = BlenderSession.prewarm({ blenderPath: BLENDER, threads: 0 });
    try {
      assert.equal(session.alive, false, 'no scene yet: not ready to render');
      await session.untilWarm();
      await assert.rejects(session.render(1, join(workDir, 'early_####')), /no scene is loaded yet/);
      await session.open({ blendFile: scene, allowScripts: false, overrides: {} });
      assert.equal(session.alive, true);
      const results = await Promise.all(frames.map((f) => session.render(f, join(workDir, 'warm_####'))));
      const expected = await references;
      for (const [i, result] of results.entries()) {
        assertPixelsEqual(await decodeRgba(result.path), await decodeRgba(expected[i]!), `frame ${frames[i]}`);
      }
      const [one, two] = await Promise.all(results.map((r) => decodeRgba(r.path)));
      assert.ok(!one!.data.equals(two!.data), 'frames 1 and 2 are identical: the comparison proves little');
      await assert.rejects(session.open({ blendFile: scene, allowScripts: false, overrides: {} }), /already has a scene/);
    } finally {
      await session.close();
    }
  });

  it('allowScripts decides whether Python drivers run, exactly as -y / -Y do for `blender -b -f N`', async () => {
    // A driver only full Python can evaluate (a lambda): it stretches the cube 3x in z when allowed.
    const driverScene = join(workDir, 'python-driver.blend');
    const makeDriver = [
      'import bpy',
      'cube = bpy.data.objects["Mover"]',
      'driver = cube.driver_add("scale", 2).driver',
      'driver.type = "SCRIPTED"',
      'driver.expression = "(lambda height: height)(3.0)"',
      'cube.scale[2] = 1.0',
      `bpy.ops.wm.save_as_mainfile(filepath=${JSON.stringify(driverScene)}, compress=False)`,
    ].join('\n');
    // -Y while saving, so the stored scale stays 1 and only a driver that runs changes it.
    await run(BLENDER, ['-b', scene, '-Y', '--python-expr', makeDriver], { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });

    const render = async (allowScripts: boolean) => {
      const name = allowScripts ? 'scripts' : 'noscripts';
      const reference = renderWithCli(driverScene, join(workDir, `cli_${name}_####`), 1, allowScripts);
      const session = await openWarm(driverScene, allowScripts);
      try {
        const result = await session.render(1, join(workDir, `warm_${name}_####`));
        return { warm: await decodeRgba(result.path), cli: await decodeRgba(await reference) };
      } finally {
        await session.close();
      }
    };
    const [allowed, refused] = await Promise.all([render(true), render(false)]);
    assertPixelsEqual(allowed.warm, allowed.cli, 'scripts allowed');
    assertPixelsEqual(refused.warm, refused.cli, 'scripts refused');
    assert.ok(!allowed.cli.data.equals(refused.cli.data), 'the Python driver changed nothing: the test proves little');
  });

  it('reports a scene Blender cannot load, or a refused override, as clearly as a cold start', async () => {
    const notBlend = join(workDir, 'not-a-scene.blend');
    await writeFile(notBlend, 'hello, I am text\n');
    await Promise.all([
      assert.rejects(openWarm(notBlend), (error: Error) => {
        assert.match(error.message, /failed to start for .*not-a-scene\.blend: could not load the scene: /);
        assert.match(error.message, /Error: File format is not supported/);
        return true;
      }),
      assert.rejects(openWarm(scene, false, { engine: 'NO_SUCH_ENGINE' }), /could not apply overrides: .*NO_SUCH_ENGINE/),
    ]);
  });

  it('a Blender that cannot run: the launcher logs why the warm one is unusable, then fails like a cold start', async () => {
    const { logger, find } = capturingLogger();
    const launcher = new BlenderLauncher({ blenderPath: join(workDir, 'no-such-blender'), threads: 0, prewarm: true, logger });
    launcher.warmUp();
    await assert.rejects(
      launcher.open({ blendFile: scene, allowScripts: false, overrides: {} }),
      /Could not run Blender \(.*no-such-blender\): spawn .*ENOENT/,
    );
    assert.match(find('the pre-warmed Blender is not usable; starting Blender cold')[0]?.reason ?? '', /Could not run Blender/);
    launcher.stop();
  });
});

describe('worker with a pre-warmed Blender (real farm)', () => {
  const farms: TestFarm[] = [];
  after(async () => Promise.all(farms.map((f) => f.close())));

  /** A farm with one worker whose log is captured; `settings` as in settings.conf. */
  async function farmWithWorker(settings: { prewarm_blender: boolean }) {
    const farm = await startTestFarm();
    farms.push(farm);
    const { logger, find } = capturingLogger();
    const worker = new RenderWorker(
      {
        ...workerSchema.parse({}),
        blender_path: BLENDER,
        threads: 1,
        port: farm.server.wsPort,
        web_port: farm.server.httpPort,
        cache_dir: path.join(farm.root, 'worker'),
        token: farm.server.tokens.worker!,
        ...settings,
      },
      logger,
    );
    farm.workers.push(worker); // shut down by farm.close()
    void worker.run();
    const scene = await openAsBlob(await makeTestScene({ frames: '1-1', width: 48, height: 32, samples: 2 }));
    const renderJob = async () => {
      const { body } = await submitBlend(farm.server.httpUrl, scene);
      const final = await waitForJob(farm.server, body.id, ['completed', 'failed']);
      assert.equal(final.state, 'completed', final.error ?? '');
    };
    return { worker, find, renderJob };
  }

  const warmPids = () => sessionProcesses().filter((p) => p.prewarmed).map((p) => p.pid);
  const waitingLogs = (find: (msg: string) => Array<Record<string, any>>) => find('pre-warmed Blender waiting for a scene');

  it('renders a job in the pre-warmed Blender, warms a fresh one after it, starts cold if that one died, and leaves none behind', async () => {
    const { worker, find, renderJob } = await farmWithWorker({ prewarm_blender: true });
    // Submitted at once: the Blender pre-warmed when the worker started serves the job,
    // whether it is still starting when the first frame arrives or already waiting.
    await renderJob();
    const used = find('loading the scene into the pre-warmed Blender').map((r) => r.pid as number);
    assert.equal(used.length, 1, 'the job used the pre-warmed Blender');
    const first = used[0]!;
    assert.equal(waitingLogs(find)[0]?.pid, first);
    // The job is over: its Blender (the one pre-warmed) goes, and a new one takes its place.
    await until(() => waitingLogs(find).length === 2, 30_000, 'a fresh pre-warmed Blender after the job');
    const second = waitingLogs(find)[1]!.pid as number;
    assert.notEqual(second, first);
    await until(() => !isRunning(first), 10_000, 'the Blender that rendered the job to exit');
    assert.deepEqual(warmPids(), [second]);

    process.kill(second, 'SIGKILL'); // dies while the worker is idle
    await until(() => !warmPids().includes(second), 10_000, 'the pre-warmed Blender to die');
    await renderJob();
    assert.deepEqual(find('the pre-warmed Blender is not usable; starting Blender cold').map((r) => r.pid), [second]);
    assert.equal(find('loading the scene into the pre-warmed Blender').length, 1, 'the second job started Blender cold');

    // Shut down while the next one may be pre-warming: it must not outlive the worker either.
    await worker.shutdown();
    await until(() => sessionProcesses().length === 0, 10_000, 'no Blender session left after shutdown');
  });

  it('with prewarm_blender = false, starts Blender only when a job arrives, as before', async () => {
    const { worker, find, renderJob } = await farmWithWorker({ prewarm_blender: false });
    await renderJob();
    assert.equal(find('pre-warming Blender for the next job').length, 0);
    assert.equal(find('loading the scene into the pre-warmed Blender').length, 0);
    assert.equal(find('Blender session ready').length, 1, 'one cold-started session for the job');
    await until(() => sessionProcesses().length === 0, 10_000, 'the job\'s Blender to exit after the job');
    await worker.shutdown();
  });
});
