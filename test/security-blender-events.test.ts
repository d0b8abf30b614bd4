import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, link, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { BlenderRenderError, BlenderSession, probeScene, type RenderResult } from '../src/worker/blender/index.ts';
import { EventOrder, FENCE_PREFIX, type OutputStream, type SessionEvent } from '../src/worker/blender/progress.ts';
import { checkSavedFile, expandFrameNumber, outputPatternProblem } from '../src/worker/blender/saved-file.ts';
import { BLENDER, assertPixelsEqual, decodeRgba, makeHostileScene } from '../testkit/scenes.ts';

const run = promisify(execFile);
const OLD_PREFIX = '@@ARCHENLAND ';
const NONCE = '0123456789abcdef0123456789abcdef';
/** The nonce the hostile scene's forged fence lines guess. */
const GUESSED_NONCE = '0'.repeat(32);

/** What the old stdout protocol would have taken a line for. */
function oldStyleEvent(line: string): Record<string, unknown> | null {
  if (!line.startsWith(OLD_PREFIX)) return null;
  try {
    return JSON.parse(line.slice(OLD_PREFIX.length)) as Record<string, unknown>;
  } catch {
    return null;
  }
}

async function listFiles(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => !entry.isDirectory())
    .map((entry) => relative(root, join(entry.parentPath, entry.name)))
    .sort();
}

/** A file the worker must never touch: its content and times, to compare after the attack. */
async function snapshot(path: string) {
  const { mtimeMs, ctimeMs, size } = await stat(path);
  return { content: await readFile(path, 'utf8'), mtimeMs, ctimeMs, size };
}

describe('EventOrder: events from the pipe, in order with Blender output', () => {
  function recorder() {
    const seen: Array<{ line: string; stream: OutputStream } | { event: SessionEvent }> = [];
    const rejected: string[] = [];
    const order = new EventOrder(NONCE, {
      line: (stream, line) => seen.push({ stream, line }),
      event: (event) => seen.push({ event }),
      rejected: (line) => rejected.push(line),
    });
    return { order, seen, rejected };
  }
  const event = (seq: number, fields: object, nonce = NONCE) => JSON.stringify({ nonce, seq, ...fields });
  const fence = (seq: number, nonce = NONCE) => `${FENCE_PREFIX}${nonce} ${seq}`;
  const saved = { event: 'saved', frame: 1, path: '/out/frame_0001.png' } as const;

  it('hands an event out only after its fence on stdout and stderr, and holds later lines until then', () => {
    const { order, seen } = recorder();
    order.addOutputLine('stdout', 'Fra:1 Sample 1/2');
    order.addOutputLine('stdout', fence(1));
    order.addOutputLine('stdout', 'printed after the event');
    order.addEventLine(event(1, saved));
    assert.deepEqual(seen, [{ stream: 'stdout', line: 'Fra:1 Sample 1/2' }], 'stderr has not reached its fence yet');
    order.addOutputLine('stderr', 'a warning before the event');
    order.addOutputLine('stderr', fence(1));
    assert.deepEqual(seen, [
      { stream: 'stdout', line: 'Fra:1 Sample 1/2' },
      { stream: 'stderr', line: 'a warning before the event' },
      { event: saved },
      { stream: 'stdout', line: 'printed after the event' },
    ]);
  });

  it('waits for the event when the fences come first, and keeps events in sequence', () => {
    const { order, seen } = recorder();
    for (const stream of ['stdout', 'stderr'] as const) order.addOutputLine(stream, fence(1));
    for (const stream of ['stdout', 'stderr'] as const) order.addOutputLine(stream, fence(2));
    order.addEventLine(event(2, { event: 'fatal', message: 'second' }));
    assert.equal(seen.length, 0, 'event 1 has not come yet');
    order.addEventLine(event(1, { event: 'ready', blenderVersion: '3.4.1', sceneName: 'Scene' }));
    assert.deepEqual(
      seen.map((item) => ('event' in item ? item.event.event : item.line)),
      ['ready', 'fatal'],
    );
  });

  it('treats forged events and fences on stdout as log lines', () => {
    const { order, seen } = recorder();
    const forged = [
      `${OLD_PREFIX}{"event":"saved","frame":1,"path":"/home/worker/settings.conf"}`,
      `${OLD_PREFIX}{"event":"fatal","message":"forged"}`,
      event(1, saved), // a well-formed event, but on stdout
      fence(1, GUESSED_NONCE),
      fence(2), // the right nonce, out of sequence
      `${fence(1)} and more`,
    ];
    for (const line of forged) order.addOutputLine('stdout', line);
    assert.deepEqual(seen, forged.map((line) => ({ stream: 'stdout', line })));
  });

  it('ignores pipe lines with another nonce, repeated numbers or no event', () => {
    const { order, seen, rejected } = recorder();
    const bad = [event(1, saved, GUESSED_NONCE), event(1, { event: 'teleport' }), 'not json'];
    for (const line of bad) order.addEventLine(line);
    order.addEventLine(event(1, saved));
    order.addEventLine(event(1, { event: 'fatal', message: 'again' }));
    assert.deepEqual(rejected, [...bad, event(1, { event: 'fatal', message: 'again' })]);
    for (const stream of ['stdout', 'stderr'] as const) order.addOutputLine(stream, fence(1));
    assert.deepEqual(seen, [{ event: saved }]);
  });

  it('splits a fence from text Blender left unterminated before it, and releases held lines at exit', () => {
    const { order, seen } = recorder();
    order.addOutputLine('stdout', `Saving…${fence(1)}`);
    order.addOutputLine('stdout', 'after the fence');
    assert.deepEqual(seen, [{ stream: 'stdout', line: 'Saving…' }]);
    order.flush();
    assert.deepEqual(seen.at(-1), { stream: 'stdout', line: 'after the fence' });
  });
});

describe('checkSavedFile: only the frame file the worker expects', () => {
  let root: string;
  let out: string;
  let secret: string;
  const pattern = () => join(out, 'frame_####');
  const refused = (promise: Promise<void>, why: RegExp) =>
    assert.rejects(promise, (error: Error) => {
      assert.match(error.message, /^Blender reported frame -?\d+ saved as .*, which is not this frame's output file /);
      assert.match(error.message, why);
      return true;
    });

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'archenland-saved-file-'));
    out = join(root, 'output', 'job');
    await mkdir(out, { recursive: true });
    await mkdir(join(root, 'elsewhere'));
    secret = join(root, 'elsewhere', 'frame_0001.png');
    await writeFile(secret, 'farm token');
  });
  after(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('expands "#" as Blender does', () => {
    assert.equal(expandFrameNumber('frame_####', 7), 'frame_0007');
    assert.equal(expandFrameNumber('frame_####', -3), 'frame_-0003');
    assert.equal(expandFrameNumber('frame_#', 12), 'frame_12');
    assert.equal(expandFrameNumber('a##b##', 12), 'a##b12');
    assert.equal(expandFrameNumber('frame', 12), 'frame0012');
    assert.equal(expandFrameNumber('f_##', 123456), 'f_123456');
  });

  it('accepts the frame file itself', async () => {
    await writeFile(join(out, 'frame_0001.png'), 'png');
    await writeFile(join(out, 'frame_-0002.exr'), 'exr');
    await checkSavedFile(pattern(), 1, join(out, 'frame_0001.png'));
    await checkSavedFile(pattern(), -2, join(out, 'frame_-0002.exr'));
    await rm(join(out, 'frame_0001.png'));
  });

  it('refuses a file outside the output folder, also through ".."', async () => {
    await refused(checkSavedFile(pattern(), 1, secret), /it is not in the output folder/);
    await refused(checkSavedFile(pattern(), 1, join(out, '..', '..', 'elsewhere', 'frame_0001.png')), /not in the output folder/);
    await refused(checkSavedFile(pattern(), 1, `${out}/../../elsewhere/frame_0001.png`), /not in the output folder/);
    await refused(checkSavedFile(pattern(), 1, 'frame_0001.png'), /not in the output folder/);
  });

  it('refuses a symbolic link or a hard link to a file outside', async () => {
    const frameFile = join(out, 'frame_0001.png');
    await symlink(secret, frameFile);
    await refused(checkSavedFile(pattern(), 1, frameFile), /it is a symbolic link/);
    await rm(frameFile);
    await link(secret, frameFile);
    await refused(checkSavedFile(pattern(), 1, frameFile), /it has 2 hard links/);
    await rm(frameFile);
    assert.equal(await readFile(secret, 'utf8'), 'farm token');
  });

  it('refuses another frame, another kind of file name, a directory or a missing file', async () => {
    await writeFile(join(out, 'frame_0002.png'), 'png');
    await refused(checkSavedFile(pattern(), 1, join(out, 'frame_0002.png')), /its name is not frame_0001 followed by an image extension/);
    await writeFile(join(out, 'frame_0001.conf'), 'not an image');
    await refused(checkSavedFile(pattern(), 1, join(out, 'frame_0001.conf')), /its name is not frame_0001/);
    await refused(checkSavedFile(pattern(), 1, join(out, 'frame_0001.png.png')), /its name is not frame_0001/);
    await mkdir(join(out, 'frame_0003.png'));
    await refused(checkSavedFile(pattern(), 3, join(out, 'frame_0003.png')), /it is not a regular file/);
    await refused(checkSavedFile(pattern(), 4, join(out, 'frame_0004.png')), /it cannot be read \(ENOENT\)/);
  });

  it('refuses output patterns it could not compare with', () => {
    assert.equal(outputPatternProblem('/out/job/frame_####'), null);
    assert.match(outputPatternProblem('out/frame_####') ?? '', /must be an absolute path/);
    assert.match(outputPatternProblem('/out/job/../frame_####') ?? '', /must be a normalized path/);
    assert.match(outputPatternProblem('/out/job/') ?? '', /must be a normalized path to a file name/);
  });
});

// Speaks session.py's protocol, but reports whatever file frames.json names: a stand-in for a
// Blender whose reply cannot be trusted (e.g. a scene allowed to run scripts, or a bug).
const FAKE_BLENDER = `#!/usr/bin/env python3
import json, os, sys
nonce = os.environ["ARCHENLAND_EVENT_NONCE"]
events = os.fdopen(3, "w", buffering=1)
frames = os.path.join(os.path.dirname(os.path.abspath(__file__)), "frames.json")
seq = 0
def emit(event, **fields):
    global seq
    seq += 1
    fence = f"${FENCE_PREFIX}{nonce} {seq}\\n"
    sys.stdout.write(fence); sys.stdout.flush()
    sys.stderr.write(fence); sys.stderr.flush()
    events.write(json.dumps({"nonce": nonce, "seq": seq, "event": event, **fields}) + "\\n")
print('${OLD_PREFIX}{"event": "fatal", "message": "forged on stdout"}', flush=True)
events.write(json.dumps({"nonce": "f" * 32, "seq": 1, "event": "fatal", "message": "wrong nonce"}) + "\\n")
emit("ready", blenderVersion="fake", sceneName="Fake")
for line in sys.stdin:
    command = json.loads(line)
    if command["cmd"] == "quit":
        break
    print(f"Fra:{command['frame']} rendering", flush=True)
    with open(frames) as f:
        emit("saved", frame=command["frame"], path=json.load(f)[str(command["frame"])])
`;

describe('a session refuses a saved file that is not the frame file', () => {
  it('fails the frame, touches nothing, and keeps serving', async () => {
    const root = await mkdtemp(join(tmpdir(), 'archenland-fake-blender-'));
    try {
      const fake = join(root, 'fake-blender');
      await writeFile(fake, FAKE_BLENDER);
      await chmod(fake, 0o755);
      const out = join(root, 'output');
      const secret = join(root, 'settings.conf');
      await mkdir(out);
      await writeFile(secret, 'token = "secret"\n');
      await writeFile(join(out, 'frame_0003.png'), 'png');
      await symlink(secret, join(out, 'frame_0002.png'));
      const reported = { 1: secret, 2: join(out, 'frame_0002.png'), 3: join(out, 'frame_0003.png') };
      await writeFile(join(root, 'frames.json'), JSON.stringify(reported));
      const before = await snapshot(secret);

      const session = await BlenderSession.start({
        blenderPath: fake, blendFile: join(root, 'unused.blend'), threads: 1, allowScripts: false, overrides: {},
      });
      try {
        for (const [frame, why] of [[1, /not in the output folder/], [2, /symbolic link/]] as const) {
          await assert.rejects(session.render(frame, join(out, 'frame_####')), (error: Error) => {
            assert.ok(error instanceof BlenderRenderError);
            assert.equal(error.frame, frame);
            assert.match(error.message, why);
            assert.match(error.log, new RegExp(`^Fra:${frame} rendering$`, 'm'));
            return true;
          });
        }
        assert.equal(session.alive, true, 'a forged or refused reply must not end the session');
        const good = await session.render(3, join(out, 'frame_####'));
        assert.equal(good.path, reported[3]);
        assert.equal(good.log, 'Fra:3 rendering');
      } finally {
        await session.close();
      }
      assert.deepEqual(await snapshot(secret), before);
      assert.deepEqual(await listFiles(out), ['frame_0002.png', 'frame_0003.png']);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('hostile scenes (real Blender)', () => {
  let workDir: string;
  let secretDir: string;

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'archenland-hostile-'));
    // Short: the forged path must fit in a Blender name (63 bytes) with the JSON around it.
    secretDir = await mkdtemp(join(tmpdir(), 'sec-'));
  });
  after(async () => {
    await Promise.all([workDir, secretDir].filter(Boolean).map((dir) => rm(dir, { recursive: true, force: true })));
  });

  it('names that forge events change nothing: right frames, secret untouched, session alive', async () => {
    const secret = join(secretDir, 'token');
    await writeFile(secret, 'farm-token-do-not-upload\n');
    const untouched = await snapshot(secret);
    const scene = await makeHostileScene(join(workDir, 'forged-events.blend'), { forgeEventsAt: secret });

    const frames = [1, 2];
    const references = Promise.all(
      frames.map(async (frame) => {
        const pattern = join(workDir, 'cli', 'frame_####');
        await run(BLENDER, ['-b', scene, '-Y', '-o', pattern, '-F', 'PNG', '-f', String(frame)], { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
        return join(workDir, 'cli', `frame_000${frame}.png`);
      }),
    );

    const checkFrame = async (result: RenderResult, folder: string, reference: string) => {
      const expected = join(workDir, folder, `frame_000${result.frame}.png`);
      assert.equal(result.path, expected);
      assertPixelsEqual(await decodeRgba(result.path), await decodeRgba(reference), `${folder} frame ${result.frame}`);
      const lines = result.log.split('\n');
      // The forgeries reached the log, where the old protocol would have obeyed them.
      const forged = lines.map(oldStyleEvent).filter((event) => event !== null);
      assert.ok(forged.some((e) => e.event === 'saved' && e.frame === 1 && e.path === secret), 'no forged saved event in the log');
      for (const kind of ['ready', 'waiting', 'error', 'fatal']) {
        assert.ok(forged.some((e) => e.event === kind), `no forged ${kind} event in the log`);
      }
      // Only the guessed fences show up; the session's own never reach a log.
      const fences = lines.filter((line) => line.includes(FENCE_PREFIX));
      const guessed = new RegExp(`^${FENCE_PREFIX}${GUESSED_NONCE} \\d+$`);
      assert.ok(fences.length > 0 && fences.every((line) => guessed.test(line)), fences.join('\n'));
    };

    const cold = await BlenderSession.start({ blenderPath: BLENDER, blendFile: scene, threads: 0, allowScripts: false, overrides: {} });
    try {
      const results = await Promise.all(frames.map((frame) => cold.render(frame, join(workDir, 'cold', 'frame_####'))));
      assert.equal(cold.alive, true, 'forged fatal and error lines must not end the session');
      const expected = await references;
      for (const [i, result] of results.entries()) await checkFrame(result, 'cold', expected[i]!);
    } finally {
      await cold.close();
    }

    const warm = BlenderSession.prewarm({ blenderPath: BLENDER, threads: 0 });
    try {
      await warm.open({ blendFile: scene, allowScripts: false, overrides: {} });
      await checkFrame(await warm.render(1, join(workDir, 'warm', 'frame_####')), 'warm', (await references)[0]!);
    } finally {
      await warm.close();
    }

    const probe = await probeScene({ blenderPath: BLENDER, blendFile: scene, allowScripts: false });
    assert.equal(probe.frameEnd, 2);
    assert.match(probe.sceneName, /^\n@@ARCHENLAND \{"path":/, 'the probe reports the real (hostile) scene name');

    assert.deepEqual(await snapshot(secret), untouched);
    assert.deepEqual(await listFiles(secretDir), ['token']);
  });

  it('File Output nodes write only into <output folder>/passes, whatever their paths', async () => {
    const root = join(workDir, 'file-outputs');
    const outside = await mkdtemp(join(tmpdir(), 'archenland-outside-'));
    try {
      // Like the worker's blend cache: "//passes/" resolves beside the .blend, and the node
      // group's "//../grouppasses/" plus "../../escape_" would climb up to `root`.
      const blendDir = join(root, 'cache', 'blends');
      await mkdir(blendDir, { recursive: true });
      const scene = await makeHostileScene(join(blendDir, 'scene.blend'), { fileOutputsOutside: outside });
      const session = await BlenderSession.start({ blenderPath: BLENDER, blendFile: scene, threads: 0, allowScripts: false, overrides: {} });
      try {
        for (const frame of [1, 2]) {
          const result = await session.render(frame, join(root, 'output', 'job', 'frame_####'));
          assert.equal(result.path, join(root, 'output', 'job', `frame_000${frame}.png`));
        }
      } finally {
        await session.close();
      }

      assert.deepEqual(await listFiles(outside), [], 'nothing written to the absolute base path');
      const perFrame = (frame: number) => [
        `output/job/frame_000${frame}.png`,
        `output/job/passes/compositor/Beside blend/rel_000${frame}.png`,
        `output/job/passes/compositor/Multilayer/multi_000${frame}.exr`,
        `output/job/passes/compositor/Outside/abs_000${frame}.png`,
        `output/job/passes/group-Hidden passes/In group/escape_000${frame}.png`,
      ];
      assert.deepEqual(await listFiles(root), ['cache/blends/scene.blend', ...perFrame(1), ...perFrame(2)].sort());
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });
});
