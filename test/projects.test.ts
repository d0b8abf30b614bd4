/**
 * Real studio projects (issue #14): a .blend that uses textures (relative and absolute),
 * an image sequence, UDIM tiles, a linked library and a point cache is submitted with
 * `archenland submit`, which asks Blender for its files and uploads each once; the farm
 * lays the project out on the worker and renders it pixel-identical to Blender by hand.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { apiPath, type Job, type ProjectCreated } from '../src/protocol/index.ts';
import { startTestFarm, submitBlend, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { assertPixelsEqual, BLENDER, decodeRgba } from '../testkit/scenes.ts';
import { runCli } from './helpers/processes.ts';

const run = promisify(execFile);
const MAKE_PROJECT = fileURLToPath(new URL('../blender/test_scenes/make_project_scene.py', import.meta.url));

type Submitted = Job & { uploadedBytes: number; reusedBytes: number };

describe('projects: a .blend with the files it uses', () => {
  let farm: TestFarm;
  let root: string;
  let project: string;
  let main: string;

  const cli = (args: string[]) => runCli(farm.server, args, { cwd: root });
  const api = (method: string, urlPath: string, body?: unknown) =>
    fetch(`${farm.server.httpUrl}${urlPath}`, {
      method,
      headers: { authorization: `Bearer ${farm.server.tokens.user!}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  before(async () => {
    root = mkdtempSync(path.join(os.tmpdir(), 'archenland-projects-'));
    project = path.join(root, 'project');
    await run(BLENDER, ['-b', '--factory-startup', '--python', MAKE_PROJECT, '--', '--dir', project, '--frames', '1-2'], { timeout: 180_000, maxBuffer: 32 * 1024 * 1024 });
    main = path.join(project, 'shots', 'main.blend');
    farm = await startTestFarm({ workers: 1 });
  });
  after(async () => {
    await farm?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('submit finds every file through Blender, uploads each once, and the frames match Blender by hand', async () => {
    const byHand = (frame: number) => path.join(root, `by-hand_000${frame}.png`);
    await run(BLENDER, ['-b', main, '-Y', '-o', path.join(root, 'by-hand_####'), '-F', 'PNG', '-f', '1..2'], { timeout: 180_000, maxBuffer: 32 * 1024 * 1024 });
    const result = await cli(['submit', main, '--hold', '--json']);
    assert.equal(result.code, 0, result.stderr);
    const submitted = JSON.parse(result.stdout) as Submitted;
    assert.ok(submitted.projectId, 'the job has a project');
    assert.equal(submitted.reusedBytes, 0, 'a first submission sends everything');
    // The originals go away before any frame renders: the worker has only what was uploaded,
    // and the absolute texture path must be remapped into its copy of the project.
    await waitForJob(farm.server, submitted.id, ['paused']);
    renameSync(project, `${project}-away`);
    try {
      assert.equal((await api('POST', apiPath('resumeJob', { id: submitted.id }))).status, 200);
      const job = await waitForJob(farm.server, submitted.id, ['completed', 'failed'], 180_000);
      assert.equal(job.state, 'completed', job.error ?? '');
      assert.deepEqual(job.scene?.problems, [], 'the preflight found every file on the worker');
    } finally {
      renameSync(`${project}-away`, project);
    }
    for (const frame of [1, 2]) {
      const response = await api('GET', apiPath('frameFile', { id: submitted.id, frame }));
      assert.equal(response.status, 200);
      const fromFarm = path.join(root, `farm-${frame}.png`);
      writeFileSync(fromFarm, Buffer.from(await response.arrayBuffer()));
      assertPixelsEqual(await decodeRgba(fromFarm), await decodeRgba(byHand(frame)), `frame ${frame}`);
    }
  });

  it('a re-submission after one texture changed sends that texture (and the .blend) alone', async () => {
    const texture = path.join(project, 'tex', 'checker.png');
    await sharp({ create: { width: 8, height: 8, channels: 3, background: '#20a040' } }).png().toFile(`${texture}.new`);
    rmSync(texture);
    writeFileSync(texture, readFileSync(`${texture}.new`));
    rmSync(`${texture}.new`);
    const result = await cli(['submit', main, '--json']);
    assert.equal(result.code, 0, result.stderr);
    const job = JSON.parse(result.stdout) as Submitted;
    assert.equal(job.uploadedBytes, statSync(texture).size + statSync(main).size);
    assert.ok(job.reusedBytes > 0, 'the unchanged files were not sent again');
    const done = await waitForJob(farm.server, job.id, ['completed', 'failed'], 180_000);
    assert.equal(done.state, 'completed', done.error ?? '');
  });

  it('the .blend alone is held by the preflight, which names each missing file; submit --wait exits non-zero', async () => {
    const result = await cli(['submit', main, '--blend-only', '--wait']);
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /: paused/);
    assert.match(result.stdout, /held: the scene uses \d+ files the project lacks/);
    assert.match(result.stdout, /warning: .*\/\/\.\.\/tex\/checker\.png/);

    // The files are added to the held job: its scene is read again and it renders with them.
    const held = (await (await api('GET', apiPath('listJobs'))).json() as Job[]).find((job) => job.state === 'paused' && !job.projectId)!;
    const other = await cli(['add-files', held.id, path.join(project, 'tex', 'checker.png')]);
    assert.equal(other.code, 2, 'another file than the job\'s .blend is refused');
    assert.match(other.stderr, /is not the \.blend of job/);
    const added = await cli(['add-files', held.id, main, '--json']);
    assert.equal(added.code, 0, added.stderr);
    const reread = JSON.parse(added.stdout) as Submitted;
    assert.equal(reread.state, 'probing');
    assert.equal(reread.uploadedBytes, 0, 'every file was on the server already, from the submissions before');
    const job = await waitForJob(farm.server, held.id, ['completed', 'failed', 'paused'], 180_000);
    assert.equal(job.state, 'completed', job.error ?? job.notice ?? '');
    assert.deepEqual(job.scene?.problems, []);
    const again = await api('PUT', apiPath('replaceJobProject', { id: held.id }), { project: reread.projectId });
    assert.equal(again.status, 409, 'files are added only to a job held before its first frame');
  });

  it('refuses projects with paths that leave the project, unknown projects and missing files', async () => {
    const climbing = await api('POST', apiPath('createProject'), { root: '/p', main: 'a.blend', files: [{ path: '../etc/passwd', sha256: 'a'.repeat(64), size: 1 }] });
    assert.equal(climbing.status, 400);
    const created = (await (await api('POST', apiPath('createProject'), { root: '/p', main: 'a.blend', files: [{ path: 'tex/x.png', sha256: 'b'.repeat(64), size: 5 }] })).json()) as ProjectCreated;
    assert.deepEqual(created.missing, ['b'.repeat(64)]);
    const blend = new Blob([readFileSync(main)]);
    const incomplete = await submitBlend(farm.server.httpUrl, blend, { project: created.id }, { authorization: `Bearer ${farm.server.tokens.user!}` });
    assert.equal(incomplete.status, 409);
    assert.equal(incomplete.body.code, 'PROJECT_INCOMPLETE');
    assert.match(incomplete.body.error, /tex\/x\.png/);
    const unknown = await submitBlend(farm.server.httpUrl, blend, { project: 'c'.repeat(64) }, { authorization: `Bearer ${farm.server.tokens.user!}` });
    assert.equal(unknown.status, 404);
    const wrongContent = await fetch(`${farm.server.httpUrl}${apiPath('uploadProjectFile', { sha256: 'b'.repeat(64) })}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${farm.server.tokens.user!}`, 'content-type': 'application/octet-stream' },
      body: 'hello',
    });
    assert.equal(wrongContent.status, 422);
  });
});
