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
import { startTestFarm, waitForJob, type TestFarm } from './helpers/farm.ts';
import { BLENDER, assertPixelsEqual, decodeRgba } from './helpers/scenes.ts';

/*
 * The Blender add-on (addon/archenland_submit), end to end with real processes: the
 * zip built by scripts/build-addon.mjs is installed into a headless Blender, which
 * submits a scene whose material uses an EXTERNAL texture to a real farm whose worker
 * never sees that file. Only the copy the add-on packed can supply it.
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
 * BLENDER_USER_SCRIPTS), enable it, set address and token as an artist would in the
 * panel, press "Submit to Farm" and, when asked, follow the job the way the panel's
 * timer does (timers do not run in background mode). Prints one @@RESULT JSON line.
 */
function addonScript(opts: { zip: string; address: string; token: string; follow: boolean }): string {
  return `
import addon_utils, bpy, json, time
bpy.ops.preferences.addon_install(filepath=${JSON.stringify(opts.zip)}, overwrite=True)
if addon_utils.enable("archenland_submit", default_set=True) is None:
    raise SystemExit("could not enable the add-on")
import archenland_submit as addon
prefs = bpy.context.preferences.addons["archenland_submit"].preferences
prefs.address = ${JSON.stringify(opts.address)}
prefs.token = ${JSON.stringify(opts.token)}
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

describe('the Blender add-on submits a scene with external textures', () => {
  let farm: TestFarm;
  let work: string;
  let zip: string;
  let blend: string;
  let texture: Buffer;
  let blendHashBefore: string;
  let blendMtimeBefore: number;
  let submit: { stdout: string; result: any };
  let job: JobDetail;

  /**
   * Runs Blender with the add-on script. `onLine` sees stdout as it arrives, so the test
   * can act while Blender is still following the job.
   */
  const blenderWithAddon = async (token: string, follow: boolean, onLine: (line: string) => void = () => {}) => {
    const tmp = await mkdtemp(join(work, 'blender-tmp-'));
    const args = [
      '-b', '--factory-startup', blend, '--python-exit-code', '2',
      '--python-expr', addonScript({ zip, address: farm.server.httpUrl, token, follow }),
    ];
    const env = {
      ...process.env,
      BLENDER_USER_SCRIPTS: join(work, 'user-scripts'),
      BLENDER_USER_CONFIG: join(work, 'user-config'),
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
        for (const line of lines) onLine(line);
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
    return { stdout, result: JSON.parse(line.slice('@@RESULT '.length)) };
  };

  const authorized = { authorization: '' };

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'archenland-addon-'));
    const project = join(work, 'project');
    await mkdir(join(project, 'textures'), { recursive: true });
    const textureFile = join(project, 'textures', 'checker.png');
    blend = join(project, 'textured.blend');
    zip = join(work, 'archenland_submit.zip');
    await writeChecker(textureFile);
    texture = await readFile(textureFile);

    // The loopback is not trusted, so every call must carry the right token. No worker
    // yet: none may exist while the texture is still on this machine's disk.
    await Promise.all([
      startTestFarm({ workers: 0, server: { trust_loopback: false } }).then((started) => (farm = started)),
      run('node', [repo('scripts/build-addon.mjs'), '--out', zip]),
      run(BLENDER, [
        '-b', '--factory-startup', '--python', repo('blender/test_scenes/make_textured_scene.py'), '--',
        '--output', blend, '--texture', textureFile, '--relative', '--frames', '1-2', '--width', '64', '--height', '48', '--samples', '4',
      ], { timeout: 120_000 }),
    ]);
    authorized.authorization = `Bearer ${farm.server.tokens.user!}`;

    // The reference: plain Blender, with the texture where the .blend says it is.
    const args = ['-b', blend, '-o', join(work, 'ref_####'), '-F', 'PNG'];
    for (const frame of FRAMES) args.push('-f', String(frame));
    await run(BLENDER, args, { timeout: 120_000, maxBuffer: 32 * 1024 * 1024 });
    blendHashBefore = sha256(await readFile(blend));
    blendMtimeBefore = (await stat(blend)).mtimeMs;

    // Submit. The texture has to be on disk while the add-on packs it (nothing can pack
    // a file that is gone); the moment the upload is done it leaves the project, and only
    // then does the farm get its worker. So the worker, although on this same machine,
    // can only get the texture from the packed copy.
    let textureMoved: Promise<void> | undefined;
    submit = await blenderWithAddon(farm.server.tokens.user!, true, (line) => {
      if (!textureMoved && line.startsWith('Archenland: INFO: Submitted job')) {
        textureMoved = (async () => {
          await mkdir(join(work, 'elsewhere'));
          await rename(textureFile, join(work, 'elsewhere', 'checker.png'));
          farm.addWorker('worker1');
        })();
      }
    });
    assert.ok(textureMoved, `the add-on did not report a submitted job:\n${submit.stdout}`);
    await textureMoved;
    assert.deepEqual(submit.result.result, ['FINISHED'], submit.stdout);
    if (process.env.ARCHENLAND_TEST_LOGS) console.log(submit.stdout);
    const finished = await waitForJob(farm.server, submit.result.job, ['completed', 'failed', 'cancelled'], 60_000);
    assert.equal(finished.state, 'completed', `job ended ${finished.state}: ${finished.error}`);
    const response = await fetch(`${farm.server.httpUrl}/api/jobs/${finished.id}`, { headers: authorized });
    job = (await response.json()) as JobDetail;
  });

  after(async () => {
    await farm?.close();
    if (!process.env.ARCHENLAND_TEST_LOGS && work) await rm(work, { recursive: true, force: true });
  });

  it('submits with one operator call and reports the job and its page', () => {
    assert.match(submit.result.job, /^[a-z0-9]{6,40}$/);
    assert.equal(submit.result.url, `${farm.server.httpUrl}/#/jobs/${submit.result.job}`);
    assert.match(submit.stdout, new RegExp(`Archenland: INFO: Submitted job ${submit.result.job}`));
    assert.match(submit.stdout, /Archenland: packing textures/);
    // Submitted while no worker was connected: the artist is told the job will wait.
    assert.match(submit.stdout, /Archenland: WARNING: No render worker is connected to the farm right now/);
    assert.equal(job.allowScripts, false);
    assert.deepEqual(job.frames, { start: 1, end: 2, step: 1 });
    assert.deepEqual(job.counts, { ...job.counts, total: 2, done: 2, failed: 0 });
  });

  it('follows the job to its end like the panel does (state and frames done/total)', () => {
    assert.match(submit.stdout, /Archenland status: completed: 2\/2 frames done/);
  });

  it('renders pixels identical to a local render made with the texture present', async () => {
    // Without the texture, Blender renders magenta: the reference really depends on it.
    const missing = join(work, 'missing_####');
    await run(BLENDER, ['-b', blend, '-o', missing, '-F', 'PNG', '-f', '1'], { timeout: 120_000, maxBuffer: 32 * 1024 * 1024 });
    const reference1 = await decodeRgba(join(work, 'ref_0001.png'));
    assert.notDeepEqual((await decodeRgba(join(work, 'missing_0001.png'))).data, reference1.data, 'the texture made no difference');

    for (const frame of FRAMES) {
      const response = await fetch(`${farm.server.httpUrl}/api/jobs/${job.id}/frames/${frame}`, { headers: authorized });
      assert.equal(response.status, 200);
      const served = join(work, `served_${frame}.png`);
      await writeFile(served, Buffer.from(await response.arrayBuffer()));
      const reference = join(work, `ref_${String(frame).padStart(4, '0')}.png`);
      assertPixelsEqual(await decodeRgba(served), await decodeRgba(reference), `frame ${frame}`);
    }
  });

  it('ships the texture inside the .blend, never as a file on the worker', async () => {
    const cacheDir = join(farm.root, 'worker1');
    const files = await filesUnder(cacheDir);
    const blends = files.filter((f) => f.endsWith('.blend'));
    assert.equal(blends.length, 1, `expected the job's .blend in ${cacheDir}: ${files.join(', ')}`);
    assert.ok((await readFile(blends[0]!)).includes(texture), 'the packed texture is not inside the uploaded .blend');
    const textureHash = sha256(texture);
    for (const file of files) {
      assert.notEqual(sha256(await readFile(file)), textureHash, `${file} is a copy of the texture`);
      assert.doesNotMatch(file, /checker/);
    }
  });

  it("leaves the artist's file and session untouched", async () => {
    assert.equal(sha256(await readFile(blend)), blendHashBefore, 'the .blend on disk changed');
    assert.equal((await stat(blend)).mtimeMs, blendMtimeBefore);
    const { before, after } = submit.result;
    assert.deepEqual(after, before, 'the open session changed');
    assert.equal(after.dirty, false);
    assert.deepEqual(after.packed, [], 'the texture got packed into the open file');
    assert.deepEqual(after.imagePaths, ['//textures/checker.png']);
    assert.deepEqual(await filesUnder(join(work, 'project')), [blend], 'files were left next to the .blend');
  });

  it('cleans up its temporary copy', async () => {
    const leftovers = await readdir(join(work), { withFileTypes: true });
    for (const dir of leftovers.filter((d) => d.isDirectory() && d.name.startsWith('blender-tmp-'))) {
      assert.deepEqual(await filesUnder(join(work, dir.name)), [], `temporary files left in ${dir.name}`);
    }
  });

  it('reports a wrong token plainly, before packing anything, and creates no job', async () => {
    const wrong = await blenderWithAddon('not-the-farm-token', false);
    assert.deepEqual(wrong.result.result, ['ERROR'], wrong.stdout);
    assert.match(
      wrong.stdout,
      /Archenland: ERROR: The farm refused the token: missing or wrong access token \(HTTP 401\)\. Check the token in the Archenland panel/,
    );
    assert.doesNotMatch(wrong.stdout, /packing textures/);
    assert.ok(wrong.result.seconds < 5, `took ${wrong.result.seconds} s to refuse`);
    assert.equal(wrong.result.job, undefined);
    const jobs = (await (await fetch(`${farm.server.httpUrl}/api/jobs`, { headers: authorized })).json()) as unknown[];
    assert.equal(jobs.length, 1);
    assert.equal(sha256(await readFile(blend)), blendHashBefore);
  });
});

describe("the add-on's network code (plain python3, no Blender)", () => {
  it('passes its unit tests: streamed multipart upload, token, errors, job status', async () => {
    const { stderr } = await run('python3', [repo('addon/archenland_submit/tests/test_farm_client.py')], {
      timeout: 60_000,
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' }, // no __pycache__ in the repository
    });
    assert.match(stderr, /\nOK\n?$/, stderr);
  });
});
