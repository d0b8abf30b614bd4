/**
 * Worker setting `nice`: Blender runs at the niceness asked for, every thread of it,
 * rendering threads included, and at the matching best-effort I/O level. Real Blender;
 * niceness read back from /proc/<pid>/task/<tid>/stat as the kernel keeps it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { getPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { BlenderSession } from '../src/worker/blender/index.ts';
import { ioLevelOf } from '../src/worker/blender/priority.ts';
import { startTestFarm } from '../testkit/farm.ts';
import { until } from './helpers/processes.ts';
import { BLENDER, makeTestScene } from '../testkit/scenes.ts';

const run = promisify(execFile);

/** Fields of a /proc stat line after the command name (which may hold spaces and parentheses). */
function statFields(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}
/** Field 19 of proc(5)'s stat is the niceness; field 3, the first after the name, is index 0. */
const niceOf = (file: string) => Number(statFields(file)[16]);
const parentOf = (pid: number) => Number(statFields(`/proc/${pid}/stat`)[1]);

/** The niceness of every thread of the process. */
function threadNiceness(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => niceOf(`/proc/${pid}/task/${tid}/stat`));
}

/** Blender processes started by this process (the test's own workers). */
function blenderChildren(): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .filter((pid) => {
      try {
        return parentOf(pid) === process.pid && readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'blender';
      } catch {
        return false; // exited while we looked
      }
    });
}

/** The niceness of a process, or null once it is gone. */
function niceOrNull(pid: number): number | null {
  try {
    return niceOf(`/proc/${pid}/stat`);
  } catch {
    return null;
  }
}

/** `ionice -p PID` prints e.g. "best-effort: prio 6"; null without ionice. */
async function ioPriority(pid: number): Promise<string | null> {
  if (!existsSync('/usr/bin/ionice')) return null;
  return (await run('ionice', ['-p', String(pid)])).stdout.trim();
}

// Raising niceness needs no privilege, lowering it does: ask for more than the tests run at.
const baseline = getPriority();
const wanted = Math.min(19, baseline + 7);

describe('Blender at a low priority (worker setting nice)', () => {
  let workDir: string;
  let scene: string;

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'archenland-nice-test-'));
    scene = await makeTestScene({ frames: '1-2', width: 64, height: 48, samples: 16 });
  });

  after(async () => {
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it('every thread of a session, its render threads too, runs at the niceness set, and I/O at the matching level', async () => {
    const session = await BlenderSession.start({ blenderPath: BLENDER, blendFile: scene, threads: 2, nice: wanted, allowScripts: false, overrides: {} });
    try {
      const pid = session.pid!;
      assert.equal(niceOf(`/proc/${pid}/stat`), wanted);
      let whileRendering: number[] = [];
      await session.render(1, join(workDir, 'f_####'), () => {
        if (whileRendering.length === 0) whileRendering = threadNiceness(pid);
      });
      assert.ok(whileRendering.length > 1, 'Blender renders with several threads');
      assert.deepEqual(new Set(whileRendering), new Set([wanted]), `threads while rendering: ${whileRendering.join(' ')}`);
      const io = await ioPriority(pid);
      if (io !== null) assert.equal(io, `best-effort: prio ${ioLevelOf(wanted)}`);
    } finally {
      await session.close();
    }
  });

  it('a pre-warmed session keeps the niceness once its scene is loaded; nice 0 leaves Blender as the worker is', async () => {
    const warm = BlenderSession.prewarm({ blenderPath: BLENDER, threads: 1, nice: wanted });
    try {
      await warm.untilWarm();
      await warm.open({ blendFile: scene, allowScripts: false, overrides: {} });
      await warm.render(2, join(workDir, 'w_####'));
      assert.deepEqual(new Set(threadNiceness(warm.pid!)), new Set([wanted]));
    } finally {
      await warm.close();
    }
    const plain = await BlenderSession.start({ blenderPath: BLENDER, blendFile: scene, threads: 1, nice: 0, allowScripts: false, overrides: {} });
    try {
      assert.deepEqual(new Set(threadNiceness(plain.pid!)), new Set([baseline]));
    } finally {
      await plain.close();
    }
  });

  it("a worker's Blender runs at the worker's `nice` setting", async () => {
    // Another value than the sessions above used, so a Blender of theirs still exiting cannot pass for the worker's.
    const workerNice = Math.min(19, baseline + 4);
    const farm = await startTestFarm();
    try {
      farm.addWorker('polite', { nice: workerNice, prewarm_blender: true });
      // The worker pre-warms a Blender as soon as it is idle: it is a child of this process.
      await until(() => blenderChildren().some((pid) => niceOrNull(pid) === workerNice), 30_000, `a Blender at niceness ${workerNice}`);
    } finally {
      await farm.close();
    }
  });
});
