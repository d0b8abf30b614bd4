import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { EVENT_FD, EVENT_NONCE_VARIABLE, newEventNonce } from '../src/worker/blender/progress.ts';
import { BLENDER, assertPixelsEqual, decodeRgba, makeTestScene } from '../testkit/scenes.ts';

// Issue #14, Blender's side: a project (a .blend and its files) is listed on the
// submitting machine (blender/list_dependencies.py), laid out as a tree on the worker,
// its absolute paths remapped (--project), and checked before rendering (probe.py's
// "problems"). Blender is run directly: probeScene and BlenderSession do not pass
// --project yet, so small helpers below speak the same fd-3 protocol.

const run = promisify(execFile);
const repo = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.url));
const PROBE = repo('blender/probe.py');
const SESSION = repo('blender/session.py');
const LIST_DEPENDENCIES = repo('blender/list_dependencies.py');
const MAKE_PROJECT = repo('blender/test_scenes/make_project_scene.py');
const MAKE_SCENE = repo('blender/test_scenes/make_test_scene.py');
const BLENDER_TIMEOUT_MS = 60_000;

type Problem = { code: string; severity: 'error' | 'warning'; message: string; path?: string; fix?: string };
type ProbeInfo = { savedWith: string; problems: Problem[]; [key: string]: unknown };
type Dependency = { path: string; kind: string; owner: string };
type Missing = Dependency & { ref: string };
type DependencyList = { blendFile: string; savedWith: string; files: Dependency[]; missing: Missing[] };
type Project = { root: string; tree: string };

async function blender(args: string[]): Promise<void> {
  await run(BLENDER, args, { timeout: BLENDER_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 });
}

/**
 * Run a Blender script with the event pipe on fd 3 and `stdin` written at once;
 * the JSON lines it replied with this process's nonce.
 */
function runWithEvents(args: string[], stdin = ''): Promise<Array<Record<string, unknown>>> {
  return new Promise((resolve, reject) => {
    const nonce = newEventNonce();
    const child = spawn(BLENDER, args, {
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
      env: { ...process.env, [EVENT_NONCE_VARIABLE]: nonce },
    });
    let output = '';
    let events = '';
    child.stdout!.setEncoding('utf8').on('data', (data: string) => (output += data));
    child.stderr!.setEncoding('utf8').on('data', (data: string) => (output += data));
    (child.stdio[EVENT_FD] as Readable).setEncoding('utf8').on('data', (data: string) => (events += data));
    const timer = setTimeout(() => child.kill('SIGKILL'), BLENDER_TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const replies = events
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .filter((reply) => reply.nonce === nonce);
      if (replies.length === 0) reject(new Error(`no reply (exit ${code}):\n${output.slice(-3000)}`));
      else resolve(replies);
    });
    child.stdin!.end(stdin);
  });
}

async function probe(blendFile: string, opts: { project?: Project; allowScripts?: boolean } = {}): Promise<ProbeInfo> {
  const args = ['-b', blendFile, opts.allowScripts ? '-y' : '-Y', '--python', PROBE];
  if (opts.project) args.push('--', '--project', JSON.stringify(opts.project));
  const [reply] = await runWithEvents(args);
  assert.equal(reply.event, 'probe');
  return reply as unknown as ProbeInfo;
}

async function listDependencies(blendFile: string, output: string): Promise<DependencyList> {
  await blender(['-b', '--factory-startup', blendFile, '-Y', '--python', LIST_DEPENDENCIES, '--', '--output', output]);
  return JSON.parse(await readFile(output, 'utf8')) as DependencyList;
}

/** The "saved" paths of a session's renders; fails on any error or fatal reply. */
function savedPaths(replies: Array<Record<string, unknown>>): string[] {
  const failures = replies.filter((reply) => reply.event === 'error' || reply.event === 'fatal');
  assert.deepEqual(failures, [], 'the session reported failures');
  return replies.filter((reply) => reply.event === 'saved').map((reply) => reply.path as string);
}

const renderCommand = (frame: number, output: string) => JSON.stringify({ cmd: 'render', frame, output });

/** The deepest folder holding every path: the project's root on the submitting machine. */
function commonAncestor(paths: string[]): string {
  const split = paths.map((path) => dirname(path).split(sep));
  const first = split[0];
  let length = first.length;
  for (const parts of split) {
    let same = 0;
    while (same < Math.min(length, parts.length) && parts[same] === first[same]) same++;
    length = same;
  }
  return first.slice(0, length).join(sep) || sep;
}

/** Lay out the project's files under `tree` as the farm does: at their paths relative to `root`. */
async function layOut(files: string[], root: string, tree: string, skip: (rel: string) => boolean = () => false) {
  for (const file of files) {
    const rel = relative(root, file);
    if (skip(rel)) continue;
    await mkdir(dirname(join(tree, rel)), { recursive: true });
    await copyFile(file, join(tree, rel));
  }
}

describe('Blender projects: dependencies, remapped paths and preflight (real Blender)', () => {
  let workDir: string;
  let projectDir: string;
  let mainBlend: string;
  let absLibraryDir: string;
  let noCamera: string;
  let fakeEngine: string;
  let denoise: string;
  let scripted: string;
  let deps: DependencyList;
  let root: string;
  let tree: string;

  const makeScene = async (name: string, flags: string[]) => {
    const output = join(workDir, name);
    await blender(['-b', '--factory-startup', '--python', MAKE_SCENE, '--', '--output', output, '--frames', '1-1',
      '--width', '32', '--height', '24', '--samples', '1', ...flags]);
    return output;
  };

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'archenland-project-test-'));
    projectDir = join(workDir, 'studio', 'project');
    mainBlend = join(projectDir, 'shots', 'main.blend');
    tree = join(workDir, 'worker', 'tree');
    absLibraryDir = join(workDir, 'studio2', 'project');
    const makeProject = (dir: string, flags: string[] = []) =>
      blender(['-b', '--factory-startup', '--python', MAKE_PROJECT, '--', '--dir', dir, '--frames', '1-2', ...flags]);
    [, , noCamera, fakeEngine, denoise, scripted] = await Promise.all([
      makeProject(projectDir),
      makeProject(absLibraryDir, ['--absolute-library']),
      makeScene('no-camera.blend', ['--no-camera']),
      makeScene('fake-engine.blend', ['--fake-engine', 'FARM_FAKE_ENGINE']),
      makeTestScene({ frames: '1-1', width: 32, height: 24, samples: 1, denoise: true }),
      makeTestScene({ frames: '1-1', width: 32, height: 24, samples: 1, misbehave: 'crash:3' }),
    ]);
    // The reference: plain Blender on the original projects, one process per frame.
    await Promise.all([1, 2].map((frame) =>
      blender(['-b', mainBlend, '-o', join(workDir, 'reference_####'), '-F', 'PNG', '-f', String(frame)])));
  });

  after(async () => {
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it('lists every file the project uses, each kind expanded, nothing missing', async () => {
    deps = await listDependencies(mainBlend, join(workDir, 'deps.json'));
    assert.equal(deps.blendFile, mainBlend);
    assert.equal(deps.savedWith, '3.4');
    assert.deepEqual(deps.missing, []);
    const byPath = new Map(deps.files.map((file) => [relative(projectDir, file.path), file.kind]));
    assert.equal(byPath.size, deps.files.length, 'each file once');
    const expected: Record<string, string> = {
      'tex/checker.png': 'image',
      'abs/abs_tex.png': 'image',
      'seq/f_0001.png': 'sequence',
      'seq/f_0002.png': 'sequence',
      'udim/tile.1001.png': 'udim',
      'udim/tile.1002.png': 'udim',
      'lib/props.blend': 'library',
      'lib/tex_lib/lib_tex.png': 'image', // relative to the library, not the main file
    };
    for (const [path, kind] of Object.entries(expected)) assert.equal(byPath.get(path), kind, path);
    const caches = [...byPath].filter(([path]) => path.startsWith('shots/blendcache_main/'));
    assert.ok(caches.length >= 2 && caches.every(([, kind]) => kind === 'point_cache'), 'the baked particle cache');
    assert.equal(byPath.size, Object.keys(expected).length + caches.length, 'nothing else');
    assert.ok(!byPath.has('shots/main.blend'), 'the main .blend is not a dependency');
  });

  it('remaps absolute paths into the worker\'s tree: every file found', async () => {
    const files = [mainBlend, ...deps.files.map((file) => file.path)];
    root = commonAncestor(files);
    assert.equal(root, projectDir);
    await layOut(files, root, tree);
    // The tree is all the worker has: the original of the absolute-path texture is gone.
    await rm(join(projectDir, 'abs', 'abs_tex.png'));
    const treeBlend = join(tree, 'shots', 'main.blend');

    const [unmapped, mapped] = await Promise.all([probe(treeBlend), probe(treeBlend, { project: { root, tree } })]);
    assert.deepEqual(unmapped.problems.map((p) => [p.code, p.path]), [['MISSING_FILE', join(projectDir, 'abs', 'abs_tex.png')]]);
    assert.deepEqual(mapped.problems, []);
    assert.equal(mapped.savedWith, '3.4');
  });

  it('reports exactly the one texture a tree lacks, by its path in the .blend', async () => {
    // The same project from the worker's copies, all but one texture.
    const files = [mainBlend, ...deps.files.map((file) => file.path)].map((file) => join(tree, relative(root, file)));
    const partial = join(workDir, 'worker', 'partial');
    await layOut(files, tree, partial, (rel) => rel === join('tex', 'checker.png'));
    const info = await probe(join(partial, 'shots', 'main.blend'), { project: { root, tree: partial } });
    assert.equal(info.problems.length, 1, JSON.stringify(info.problems));
    const [problem] = info.problems;
    assert.deepEqual([problem.code, problem.severity, problem.path], ['MISSING_FILE', 'warning', '//../tex/checker.png']);
    assert.match(problem.message, /checker\.png/);
  });

  it('renders the remapped project pixel-identical to Blender on the original (cold and pre-warmed)', async () => {
    const project = { root, tree };
    const treeBlend = join(tree, 'shots', 'main.blend');
    const [cold, warm] = await Promise.all([
      runWithEvents(['-b', treeBlend, '-Y', '-t', '0', '--python', SESSION, '--', '--project', JSON.stringify(project)],
        [renderCommand(1, join(workDir, 'cold_####')), renderCommand(2, join(workDir, 'cold_####')), '{"cmd": "quit"}\n'].join('\n')),
      runWithEvents(['-b', '-Y', '-t', '0', '--python', SESSION, '--', '--prewarmed'],
        [JSON.stringify({ cmd: 'open', file: treeBlend, allowScripts: false, overrides: {}, project }),
          renderCommand(1, join(workDir, 'warm_####')), renderCommand(2, join(workDir, 'warm_####')), '{"cmd": "quit"}\n'].join('\n')),
    ]);
    const renders = [...savedPaths(cold), ...savedPaths(warm)];
    assert.equal(renders.length, 4);
    for (const path of renders) {
      const frame = path.endsWith('0001.png') ? 1 : 2;
      const reference = await decodeRgba(join(workDir, `reference_000${frame}.png`));
      assertPixelsEqual(await decodeRgba(path), reference, path);
    }
    // The frames differ (image sequence, particles): each frame was really compared.
    const [one, two] = await Promise.all([1, 2].map((f) => decodeRgba(join(workDir, `reference_000${f}.png`))));
    assert.ok(!one.data.equals(two.data));
  });

  it('remaps and reloads a library linked by absolute path, then its own absolute texture (the originals gone)', async () => {
    const blend = join(absLibraryDir, 'shots', 'main.blend');
    const listed = await listDependencies(blend, join(workDir, 'deps2.json'));
    assert.deepEqual(listed.missing, []);
    assert.ok(listed.files.some((file) => file.kind === 'library' && file.path === join(absLibraryDir, 'lib', 'props.blend')));
    const files = [blend, ...listed.files.map((file) => file.path)];
    const project = { root: commonAncestor(files), tree: join(workDir, 'worker', 'tree2') };
    await layOut(files, project.root, project.tree);
    await rm(join(absLibraryDir, 'lib'), { recursive: true }); // its texture too
    await rm(join(absLibraryDir, 'abs'), { recursive: true });
    const treeBlend = join(project.tree, 'shots', 'main.blend');
    const info = await probe(treeBlend, { project });
    assert.deepEqual(info.problems, []);
    const replies = await runWithEvents(['-b', treeBlend, '-Y', '-t', '0', '--python', SESSION, '--',
      '--project', JSON.stringify(project)], [renderCommand(1, join(workDir, 'abslib_####')), '{"cmd": "quit"}\n'].join('\n'));
    const [path] = savedPaths(replies);
    // The same scene as the first project: the same pixels as its reference.
    assertPixelsEqual(await decodeRgba(path), await decodeRgba(join(workDir, 'reference_0001.png')), path);
  });

  it('matches project roots written on Windows: backslashes, drive letter in either case', async () => {
    const code = [
      'import sys, json',
      `sys.path.insert(0, ${JSON.stringify(repo('blender'))})`,
      'from farm_session.project_paths import relative_to_root as r',
      'print("RESULT " + json.dumps([r(r"C:\\Proj\\abs\\a.png", "c:/Proj"), r("c:/proj/a.png", r"C:\\Proj"),',
      '  r("D:/Proj/a.png", "C:/Proj"), r("C:/Project2/a.png", "C:/Proj"), r("C:/Proj/x/../../a.png", "C:/Proj")]))',
    ].join('\n');
    // Plain Python (Debian's Blender runs on the system's python3): the helper needs no bpy.
    const { stdout } = await run('python3', ['-c', code], { timeout: BLENDER_TIMEOUT_MS });
    const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
    // Only the drive letter ignores case; ".." cannot climb out of the root.
    assert.deepEqual(JSON.parse(line!.slice(7)), [['abs', 'a.png'], null, null, null, null]);
  });

  it('preflight: no camera, a denoiser this Blender lacks (fixed by the override), an add-on engine, scripts', async () => {
    const [camera, denoiser, engine, scripts] = await Promise.all([
      probe(noCamera), probe(denoise), probe(fakeEngine), probe(scripted)]);
    const codes = (info: ProbeInfo) => info.problems.map((p) => [p.code, p.severity]);
    assert.deepEqual(codes(camera), [['NO_CAMERA', 'error']]);
    assert.deepEqual(codes(denoiser), [['DENOISER_UNAVAILABLE', 'error']]);
    assert.equal(denoiser.problems[0].fix, 'disable_denoising');
    assert.match(denoiser.problems[0].message, /without denoising/);
    assert.deepEqual(codes(engine), [['ENGINE_UNAVAILABLE', 'error']]);
    assert.match(engine.problems[0].message, /FARM_FAKE_ENGINE/);
    assert.deepEqual(codes(scripts), [['SCRIPTS_NEEDED', 'warning']]);
    for (const info of [camera, denoiser, engine, scripts]) {
      for (const p of info.problems) assert.ok(p.message.length <= 300 && !/[\n\r]/.test(p.message));
    }

    // The fix the problem offers: the "denoising": false override renders the frame.
    const replies = await runWithEvents(['-b', denoise, '-Y', '-t', '0', '--python', SESSION, '--',
      '--overrides', JSON.stringify({ denoising: false })],
    [renderCommand(1, join(workDir, 'denoise_off_####')), '{"cmd": "quit"}\n'].join('\n'));
    assert.equal(savedPaths(replies).length, 1);
  });
});
