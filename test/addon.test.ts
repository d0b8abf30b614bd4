import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import sharp from 'sharp';
import type { JobDetail } from '../src/protocol/index.ts';
import { startTestFarm, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { BLENDER, assertPixelsEqual, decodeRgba } from '../testkit/scenes.ts';

/*
 * The Blender add-on (addon/archenland_submit), end to end with real processes: the
 * zip built by scripts/build-addon.mjs is installed into a headless Blender, which
 * submits a scene whose material uses an EXTERNAL texture (//textures/checker.png) to
 * a real farm whose worker never sees that file: only what the add-on sent can supply
 * it. By default as a project (the .blend, plus the texture uploaded once by content);
 * with "Pack external files into the .blend", packed into the copy it sends.
 */

const run = promisify(execFile);
const repo = (p: string) => fileURLToPath(new URL(`../${p}`, import.meta.url));
const FRAMES = [1, 2];

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

/** A 16x16 yellow/blue checker: nothing like Blender's magenta "missing texture". */
async function writeChecker(file: string): Promise<void> {
  const size = 16;
  const pixels = Buffer.alloc(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const color = (Math.floor(x / 4) + Math.floor(y / 4)) % 2 === 0 ? [255, 220, 0] : [0, 60, 200];
      pixels.set(color, (y * size + x) * 3);
    }
  }
  await sharp(pixels, { raw: { width: size, height: size, channels: 3 } }).png().toFile(file);
}

/**
 * Python for `blender -b FILE --python-expr`: install the built zip (into a private
 * BLENDER_USER_SCRIPTS), enable it, set address and token (and the "Pack external files"
 * option) as an artist would in the panel, press "Submit to Farm" and, when asked, follow
 * the job the way the panel's timer does (timers do not run in background mode). Prints
 * one @@RESULT JSON line.
 */
function addonScript(opts: { zip: string; address: string; token: string; follow: boolean; pack: boolean }): string {
  return `
import addon_utils, bpy, json, time
bpy.ops.preferences.addon_install(filepath=${JSON.stringify(opts.zip)}, overwrite=True)
if addon_utils.enable("archenland_submit", default_set=True) is None:
    raise SystemExit("could not enable the add-on")
import archenland_submit as addon
prefs = bpy.context.preferences.addons["archenland_submit"].preferences
prefs.address = ${JSON.stringify(opts.address)}
prefs.token = ${JSON.stringify(opts.token)}
prefs.pack_files = ${opts.pack ? 'True' : 'False'}
session = lambda: {
    "dirty": bpy.data.is_dirty,
    "filepath": bpy.data.filepath,
    "packed": sorted(i.name for i in bpy.data.images if i.packed_file is not None),
    "imagePaths": sorted(i.filepath for i in bpy.data.images if i.filepath),
}
before = session()
started = time.time()
try:
    result = sorted(bpy.ops.archenland.submit())
except RuntimeError as error:  # an ERROR report: already printed by the operator
    result = ["ERROR"]
out = {"result": result, "seconds": round(time.time() - started, 2), "before": before, "after": session()}
task = addon.state.task
if task is not None:
    out.update(project=task.project, filesUploaded=task.files_uploaded,
               uploadedBytes=task.uploaded_bytes, reusedBytes=task.reused_bytes)
watcher = addon.state.watcher
if watcher is not None:
    out.update(job=watcher.job_id, url=watcher.url)
    if ${opts.follow ? 'True' : 'False'}:
        deadline = time.time() + 90
        while not watcher.finished and time.time() < deadline:
            time.sleep(1)
            watcher.refresh()
            print("Archenland status:", watcher.text, flush=True)
print("@@RESULT " + json.dumps(out), flush=True)
`;
}

type AddonRun = { stdout: string; result: any };

/**
 * Runs Blender on `blend` with the add-on script. `onLine` sees stdout as it arrives, so
 * the test can act while Blender is still following the job.
 */
async function blenderWithAddon(opts: {
  work: string;
  blend: string;
  zip: string;
  address: string;
  token: string;
  follow: boolean;
  pack: boolean;
  onLine?: (line: string) => void;
}): Promise<AddonRun> {
  const tmp = await mkdtemp(join(opts.work, 'blender-tmp-'));
  const args = ['-b', '--factory-startup', opts.blend, '--python-exit-code', '2', '--python-expr', addonScript(opts)];
  const env = {
    ...process.env,
    BLENDER_USER_SCRIPTS: join(opts.work, 'user-scripts'),
    BLENDER_USER_CONFIG: join(opts.work, 'user-config'),
    TMPDIR: tmp, // where the add-on's temporary copy goes
  };
  const stdout = await new Promise<string>((resolve, reject) => {
    const child = spawn(BLENDER, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let partial = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      const lines = (partial + chunk).split('\n');
      partial = lines.pop()!;
      for (const line of lines) opts.onLine?.(line);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`Blender exited with ${code ?? signal}\n${out}\n${err}`));
    });
  });
  const line = stdout.split('\n').find((l) => l.startsWith('@@RESULT '));
  assert.ok(line, `no result from Blender:\n${stdout}`);
  if (process.env.ARCHENLAND_TEST_LOGS) console.log(stdout);
  return { stdout, result: JSON.parse(line.slice('@@RESULT '.length)) };
}

/**
 * A farm with no worker yet (the loopback not trusted: every call needs the token), the
 * add-on zip, and project/textured.blend using //textures/checker.png, with the
 * reference: plain Blender's render of it, the texture where the .blend says it is.
 */
async function setUp(label: string) {
  const work = await mkdtemp(join(tmpdir(), `archenland-addon-${label}-`));
  const project = join(work, 'project');
  await mkdir(join(project, 'textures'), { recursive: true });
  const textureFile = join(project, 'textures', 'checker.png');
  const blend = join(project, 'textured.blend');
  const zip = join(work, 'archenland_submit.zip');
  await writeChecker(textureFile);
  let farm!: TestFarm;
  await Promise.all([
    startTestFarm({ workers: 0, server: { trust_loopback: false } }).then((started) => (farm = started)),
    run('node', [repo('scripts/build-addon.mjs'), '--out', zip]),
    run(BLENDER, [
      '-b', '--factory-startup', '--python', repo('blender/test_scenes/make_textured_scene.py'), '--',
      '--output', blend, '--texture', textureFile, '--relative', '--frames', '1-2', '--width', '64', '--height', '48', '--samples', '4',
    ], { timeout: 120_000 }),
  ]);
  const args = ['-b', blend, '-o', join(work, 'ref_####'), '-F', 'PNG'];
  for (const frame of FRAMES) args.push('-f', String(frame));
  await run(BLENDER, args, { timeout: 120_000, maxBuffer: 32 * 1024 * 1024 });
  const blendBytes = await readFile(blend);
  return {
    farm, work, project, textureFile, blend, zip,
    texture: await readFile(textureFile),
    blendHash: sha256(blendBytes),
    blendMtime: (await stat(blend)).mtimeMs,
    authorized: { authorization: `Bearer ${farm.server.tokens.user!}` },
  };
}
type Setup = Awaited<ReturnType<typeof setUp>>;

/**
 * Submits through the add-on and follows the job. The texture has to be on disk while
 * the add-on reads it; the moment the job is submitted it leaves the project, and only
 * then does the farm get its worker. So the worker, although on this same machine, can
 * only get the texture from what the add-on sent.
 */
async function submitThenHideTexture(t: Setup, pack: boolean): Promise<{ submit: AddonRun; job: JobDetail }> {
  let textureMoved: Promise<void> | undefined;
  const submit = await blenderWithAddon({
    work: t.work, blend: t.blend, zip: t.zip, address: t.farm.server.httpUrl, token: t.farm.server.tokens.user!, follow: true, pack,
    onLine: (line) => {
      if (!textureMoved && line.startsWith('Archenland: INFO: Submitted job')) {
        textureMoved = (async () => {
          await mkdir(join(t.work, 'elsewhere'));
          await rename(t.textureFile, join(t.work, 'elsewhere', 'checker.png'));
          t.farm.addWorker('worker1');
        })();
      }
    },
  });
  assert.ok(textureMoved, `the add-on did not report a submitted job:\n${submit.stdout}`);
  await textureMoved;
  assert.deepEqual(submit.result.result, ['FINISHED'], submit.stdout);
  return { submit, job: await finishedJob(t, submit.result.job) };
}

/** The job once it ends; it must complete ("paused": held by the preflight, e.g. a file it lacks). */
async function finishedJob(t: Setup, id: string): Promise<JobDetail> {
  const finished = await waitForJob(t.farm.server, id, ['completed', 'failed', 'cancelled', 'paused'], 60_000);
  const job = (await (await fetch(`${t.farm.server.httpUrl}/api/jobs/${id}`, { headers: t.authorized })).json()) as JobDetail;
  assert.equal(finished.state, 'completed', `job ended ${finished.state}: ${finished.error} ${JSON.stringify(job.scene?.problems ?? [])}`);
  return job;
}

/** Every frame the farm serves is pixel-identical to Blender's local render with the texture. */
async function assertFramesMatchReference(t: Setup, jobId: string): Promise<void> {
  // Without the texture, Blender renders magenta: the reference really depends on it.
  const missing = join(t.work, 'missing_####');
  await mkdir(join(t.work, 'no-texture'), { recursive: true });
  const moved = join(t.work, 'no-texture', 'checker.png');
  const present = await stat(t.textureFile).then(() => true, () => false);
  if (present) await rename(t.textureFile, moved);
  try {
    await run(BLENDER, ['-b', t.blend, '-o', missing, '-F', 'PNG', '-f', '1'], { timeout: 120_000, maxBuffer: 32 * 1024 * 1024 });
  } finally {
    if (present) await rename(moved, t.textureFile);
  }
  const reference1 = await decodeRgba(join(t.work, 'ref_0001.png'));
  assert.notDeepEqual((await decodeRgba(join(t.work, 'missing_0001.png'))).data, reference1.data, 'the texture made no difference');

  for (const frame of FRAMES) {
    const response = await fetch(`${t.farm.server.httpUrl}/api/jobs/${jobId}/frames/${frame}`, { headers: t.authorized });
    assert.equal(response.status, 200);
    const served = join(t.work, `served_${jobId}_${frame}.png`);
    await writeFile(served, Buffer.from(await response.arrayBuffer()));
    const reference = join(t.work, `ref_${String(frame).padStart(4, '0')}.png`);
    assertPixelsEqual(await decodeRgba(served), await decodeRgba(reference), `frame ${frame}`);
  }
}

/** The open file, its session and its folder as they were: the add-on only ever sent a copy. */
async function assertArtistUntouched(t: Setup, submit: AddonRun): Promise<void> {
  assert.equal(sha256(await readFile(t.blend)), t.blendHash, 'the .blend on disk changed');
  assert.equal((await stat(t.blend)).mtimeMs, t.blendMtime);
  const { before, after } = submit.result;
  assert.deepEqual(after, before, 'the open session changed');
  assert.equal(after.dirty, false);
  assert.deepEqual(after.packed, [], 'the texture got packed into the open file');
  assert.deepEqual(after.imagePaths, ['//textures/checker.png']);
}

async function assertTempCleaned(work: string): Promise<void> {
  const leftovers = await readdir(work, { withFileTypes: true });
  for (const dir of leftovers.filter((d) => d.isDirectory() && d.name.startsWith('blender-tmp-'))) {
    assert.deepEqual(await filesUnder(join(work, dir.name)), [], `temporary files left in ${dir.name}`);
  }
}

describe('the Blender add-on, "Pack external files into the .blend" on', () => {
  let t: Setup;
  let submit: AddonRun;
  let job: JobDetail;

  before(async () => {
    t = await setUp('packed');
    ({ submit, job } = await submitThenHideTexture(t, true));
    await rename(join(t.work, 'elsewhere', 'checker.png'), t.textureFile); // for the reference renders
  });

  after(async () => {
    await t?.farm?.close();
    if (!process.env.ARCHENLAND_TEST_LOGS && t?.work) await rm(t.work, { recursive: true, force: true });
  });

  it('submits with one operator call and reports the job and its page', () => {
    assert.match(submit.result.job, /^[a-z0-9]{6,40}$/);
    assert.equal(submit.result.url, `${t.farm.server.httpUrl}/#/jobs/${submit.result.job}`);
    assert.match(submit.stdout, new RegExp(`Archenland: INFO: Submitted job ${submit.result.job}`));
    assert.match(submit.stdout, /Archenland: packing textures/);
    // Submitted while no worker was connected: the artist is told the job will wait.
    assert.match(submit.stdout, /Archenland: WARNING: No render worker is connected to the farm right now/);
    assert.equal(job.allowScripts, false);
    assert.equal(job.projectId, null, 'a packed .blend is sent alone, not as a project');
    assert.deepEqual(job.frames, { start: 1, end: 2, step: 1 });
    assert.deepEqual(job.counts, { ...job.counts, total: 2, done: 2, failed: 0 });
  });

  it('follows the job to its end like the panel does (state and frames done/total)', () => {
    assert.match(submit.stdout, /Archenland status: completed: 2\/2 frames done/);
  });

  it('renders pixels identical to a local render made with the texture present', async () => {
    await assertFramesMatchReference(t, job.id);
  });

  it('ships the texture inside the .blend, never as a file on the worker', async () => {
    const cacheDir = join(t.farm.root, 'worker1');
    const files = await filesUnder(cacheDir);
    const blends = files.filter((f) => f.endsWith('.blend'));
    assert.equal(blends.length, 1, `expected the job's .blend in ${cacheDir}: ${files.join(', ')}`);
    assert.ok((await readFile(blends[0]!)).includes(t.texture), 'the packed texture is not inside the uploaded .blend');
    const textureHash = sha256(t.texture);
    for (const file of files) {
      assert.notEqual(sha256(await readFile(file)), textureHash, `${file} is a copy of the texture`);
      assert.doesNotMatch(file, /checker/);
    }
  });

  it("leaves the artist's file and session untouched", async () => {
    await assertArtistUntouched(t, submit);
    assert.deepEqual((await filesUnder(t.project)).sort(), [t.blend, t.textureFile].sort(), 'files were left next to the .blend');
  });

  it('cleans up its temporary copy', async () => {
    await assertTempCleaned(t.work);
  });

  it('reports a wrong token plainly, before packing anything, and creates no job', async () => {
    const wrong = await blenderWithAddon({
      work: t.work, blend: t.blend, zip: t.zip, address: t.farm.server.httpUrl, token: 'not-the-farm-token', follow: false, pack: true,
    });
    assert.deepEqual(wrong.result.result, ['ERROR'], wrong.stdout);
    assert.match(
      wrong.stdout,
      /Archenland: ERROR: The farm refused the token: missing or wrong access token \(HTTP 401\)\. Check the token in the Archenland panel/,
    );
    assert.doesNotMatch(wrong.stdout, /packing textures/);
    assert.ok(wrong.result.seconds < 5, `took ${wrong.result.seconds} s to refuse`);
    assert.equal(wrong.result.job, undefined);
    const jobs = (await (await fetch(`${t.farm.server.httpUrl}/api/jobs`, { headers: t.authorized })).json()) as unknown[];
    assert.equal(jobs.length, 1);
    assert.equal(sha256(await readFile(t.blend)), t.blendHash);
  });
});

describe('the Blender add-on submits a scene as a project (the default)', () => {
  let t: Setup;
  let first: AddonRun;
  let firstJob: JobDetail;
  let second: AddonRun;
  let secondJob: JobDetail;
  let textureHash: string;
  let storedFile: string;
  let storedBefore: { ino: number; mtimeMs: number };

  before(async () => {
    t = await setUp('project');
    textureHash = sha256(t.texture);
    ({ submit: first, job: firstJob } = await submitThenHideTexture(t, false));
    // The texture back where the scene says it is, and submitted again, unchanged.
    await rename(join(t.work, 'elsewhere', 'checker.png'), t.textureFile);
    storedFile = join(t.farm.server.dataDir.projectFilesDir, textureHash.slice(0, 2), textureHash);
    const stored = await stat(storedFile);
    storedBefore = { ino: stored.ino, mtimeMs: stored.mtimeMs };
    second = await blenderWithAddon({
      work: t.work, blend: t.blend, zip: t.zip, address: t.farm.server.httpUrl, token: t.farm.server.tokens.user!, follow: false, pack: false,
    });
    assert.deepEqual(second.result.result, ['FINISHED'], second.stdout);
    secondJob = await finishedJob(t, second.result.job);
  });

  after(async () => {
    await t?.farm?.close();
    if (!process.env.ARCHENLAND_TEST_LOGS && t?.work) await rm(t.work, { recursive: true, force: true });
  });

  it('sends the manifest the CLI would: root the .blend\'s folder, main the .blend, the texture by its relative path', async () => {
    assert.match(firstJob.projectId ?? '', /^[0-9a-f]{64}$/, 'the job has no project');
    assert.doesNotMatch(first.stdout, /packing textures/);
    // The manifest as workers fetch it.
    const response = await fetch(`${t.farm.server.httpUrl}/api/worker/projects/${firstJob.projectId}`, {
      headers: { authorization: `Bearer ${t.farm.server.tokens.worker!}` },
    });
    assert.equal(response.status, 200);
    const manifest = await response.json();
    assert.deepEqual(manifest, {
      ...manifest,
      root: t.project,
      main: 'textured.blend',
      files: [{ path: 'textures/checker.png', sha256: textureHash, size: t.texture.length }],
    });
    assert.equal(first.result.project.id, firstJob.projectId);
  });

  it('uploads the texture once, as a project file, and follows the job to its end', async () => {
    assert.deepEqual(first.result.project.missing, [textureHash]);
    assert.equal(first.result.filesUploaded, 1);
    assert.equal(first.result.uploadedBytes, t.texture.length);
    assert.match(first.stdout, /uploading 1 file\(s\) \(0\.0 MB\), 0 already on the farm/);
    assert.match(first.stdout, /Archenland status: completed: 2\/2 frames done/);
    assert.deepEqual(await readFile(storedFile), t.texture, 'the farm does not hold the texture');
    assert.deepEqual(firstJob.counts, { ...firstJob.counts, total: 2, done: 2, failed: 0 });
  });

  it('renders with the texture: pixel-identical to a local render', async () => {
    await assertFramesMatchReference(t, firstJob.id);
  });

  it('the worker reads the texture from the project laid out in its cache, not packed into the .blend', async () => {
    const files = await filesUnder(join(t.farm.root, 'worker1'));
    const laidOut = files.filter((f) => f.endsWith(join('textures', 'checker.png')));
    assert.ok(laidOut.length >= 1, `no textures/checker.png in the worker's project tree: ${files.join(', ')}`);
    for (const file of laidOut) assert.deepEqual(await readFile(file), t.texture);
    for (const blend of files.filter((f) => f.endsWith('.blend'))) {
      assert.ok(!(await readFile(blend)).includes(t.texture), `${blend} has the texture packed`);
    }
  });

  it('a second submission of the same scene sends no texture bytes again', async () => {
    assert.equal(secondJob.projectId, firstJob.projectId, 'the same files make the same project');
    assert.deepEqual(second.result.project.missing, [], 'the farm asked for the texture again');
    assert.equal(second.result.filesUploaded, 0);
    assert.equal(second.result.uploadedBytes, 0);
    assert.equal(second.result.reusedBytes, t.texture.length);
    assert.match(second.stdout, /uploading 0 file\(s\) \(0\.0 MB\), 1 already on the farm/);
    // The server's copy was not written again (an upload replaces it by a rename).
    const stored = await stat(storedFile);
    assert.deepEqual({ ino: stored.ino, mtimeMs: stored.mtimeMs }, storedBefore);
    assert.deepEqual(await filesUnder(t.farm.server.dataDir.projectFilesDir), [storedFile]);
    assert.deepEqual(secondJob.counts, { ...secondJob.counts, total: 2, done: 2, failed: 0 });
    await assertFramesMatchReference(t, secondJob.id);
  });

  it("leaves the artist's file, session and folder untouched, and cleans up its copy", async () => {
    await assertArtistUntouched(t, first);
    await assertArtistUntouched(t, second);
    assert.deepEqual((await filesUnder(t.project)).sort(), [t.blend, t.textureFile].sort(), 'files were left next to the .blend');
    await assertTempCleaned(t.work);
  });
});

describe("the add-on's network code (plain python3, no Blender)", () => {
  it('passes its unit tests: streamed multipart upload, token, errors, job status, project manifest and uploads', async () => {
    const { stderr } = await run('python3', [repo('addon/archenland_submit/tests/test_farm_client.py')], {
      timeout: 60_000,
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' }, // no __pycache__ in the repository
    });
    assert.match(stderr, /\nOK\n?$/, stderr);
  });
});
