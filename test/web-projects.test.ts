/**
 * Projects from the web UI (issue #14) in a real headless Chromium against a real farm:
 * a folder holding a .blend and the files it uses, then a .zip of the same folder. The
 * browser hashes every file, uploads only what the server lacks, and the job renders with
 * every file found on the worker (absolute paths included: the page reads the project's
 * root from the .blend).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Page } from 'playwright-core';
import type { Job } from '../src/protocol/index.ts';
import { launchBrowser, screenshot, watchPage, type PageWatch, type TestBrowser } from './helpers/browser.ts';
import { startTestFarm, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { BLENDER } from '../testkit/scenes.ts';

const run = promisify(execFile);
const MAKE_PROJECT = fileURLToPath(new URL('../blender/test_scenes/make_project_scene.py', import.meta.url));

/** Every file make_project_scene.py writes besides shots/main.blend. */
const OTHER_FILES = 8;

describe('web interface: projects (Chromium, real farm)', () => {
  let root: string;
  /** Where the project was made: its .blend's absolute paths point there, and nothing is there any more. */
  let madeAt: string;
  let project: string;
  let farm: TestFarm;
  let chrome: TestBrowser;
  let page: Page;
  let watch: PageWatch;
  let url: string;
  /** Project files the page PUT to the server, by SHA-256. */
  const filesSent: string[] = [];

  before(async () => {
    root = mkdtempSync(path.join(os.tmpdir(), 'archenland-web-projects-'));
    madeAt = path.join(root, 'made', 'project');
    project = path.join(root, 'project');
    const making = run(BLENDER, ['-b', '--factory-startup', '--python', MAKE_PROJECT, '--', '--dir', madeAt, '--frames', '1-1'], { timeout: 120_000, maxBuffer: 32 * 1024 * 1024 });
    [farm, chrome] = await Promise.all([startTestFarm({ workers: 1 }), launchBrowser(), making]);
    // Moved, as a project copied to another machine: the texture the .blend names by its
    // absolute path exists only in the uploaded copy, where the worker must remap it.
    renameSync(madeAt, project);
    // A hidden file and a Blender backup: neither is part of the project.
    await run('sh', ['-c', `echo junk > "${project}/.DS_Store" && cp "${project}/shots/main.blend" "${project}/shots/main.blend1"`]);
    url = farm.server.httpUrl;
    page = await chrome.browser.newPage({ viewport: { width: 1280, height: 860 } });
    watch = watchPage(page, new URL(url).hostname);
    page.on('request', (request) => {
      const match = /\/api\/files\/([0-9a-f]{64})$/.exec(request.url());
      if (match && request.method() === 'PUT') filesSent.push(match[1]!);
    });
  });

  after(async () => {
    await chrome?.close();
    await farm?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  /** Drops files or folders from disk on the submit area, as a person dragging them from a file manager. */
  const dropOnPage = async (paths: string[]) => {
    const box = (await page.locator('[data-testid="dropzone"]').boundingBox())!;
    const at = { x: box.x + box.width / 2, y: box.y + box.height / 2 };
    const cdp = await page.context().newCDPSession(page);
    const data = { items: [], files: paths, dragOperationsMask: 1 };
    await page.mouse.move(at.x, at.y);
    for (const type of ['dragEnter', 'dragOver', 'drop'] as const) await cdp.send('Input.dispatchDragEvent', { type, ...at, data });
    await cdp.detach();
  };

  /** Picks the main .blend among the project's two (the library is as shallow) and submits. */
  const submitChosen = async () => {
    const picker = page.locator('[data-testid="project-picker"]');
    await picker.waitFor();
    const offered = await picker.locator('#project-main option').allInnerTexts();
    assert.deepEqual(offered, ['lib/props.blend', 'shots/main.blend'], 'backups and hidden files are not offered');
    await picker.getByLabel('Main .blend').selectOption('shots/main.blend');
    await picker.getByRole('button', { name: 'Submit project' }).click();
  };

  /** The job the page just added, once it rendered: completed, and no file missing on the worker. */
  const renderedJob = async (): Promise<Job> => {
    await page.locator('[data-testid="submitted"]', { hasText: 'was added to the queue' }).waitFor({ timeout: 30_000 });
    const jobs = (await (await fetch(`${url}/api/jobs`)).json()) as Job[];
    const job = jobs.at(-1)!;
    assert.ok(job.projectId, 'the job names its project');
    const done = await waitForJob(farm.server, job.id, ['completed', 'failed', 'paused'], 60_000);
    assert.deepEqual(done.scene?.problems ?? [], [], 'the preflight found every file');
    assert.equal(done.state, 'completed', done.error ?? '');
    return done;
  };

  it('offers the .blend files of a chosen folder, and says so when a folder has none', async () => {
    await page.goto(`${url}/`);
    await page.locator('.live[data-live="on"]').waitFor();
    await page.locator('#project-folder').setInputFiles(project);
    const picker = page.locator('[data-testid="project-picker"]');
    await picker.waitFor();
    assert.equal(await picker.getByLabel('Main .blend').inputValue(), 'lib/props.blend', 'the shallowest, then the first by name');
    assert.match(await picker.innerText(), /project · 9 files/); // the ones made: .DS_Store and main.blend1 are left out
    await screenshot(page, 'submit-project-picker');
    await picker.getByRole('button', { name: 'Choose another' }).click();
    await page.locator('#project-folder').setInputFiles(path.join(project, 'tex'));
    const error = page.locator('[data-testid="upload-error"]');
    await error.waitFor();
    assert.match(await error.innerText(), /there is no \.blend file in tex/);

    // On plain http from another host the browser has no Web Crypto: the page says what to do.
    const insecure = await chrome.browser.newPage();
    // A string, not a function: tsx's transform would put helpers in it that the page lacks.
    await insecure.addInitScript({ content: "Object.defineProperty(window, 'isSecureContext', { get: () => false })" });
    await insecure.goto(`${url}/`);
    await insecure.locator('#project-folder').setInputFiles(project);
    assert.match(await insecure.locator('[data-testid="upload-error"]').innerText(), /needs the farm page opened over https or on localhost/);
    await insecure.close();
    assert.equal(filesSent.length, 0);
  });

  it('a file the server refuses stops the submission with its message, and no job is made', async () => {
    watch.expect(/status of 507/); // Chromium logs every refused request
    await page.route('**/api/files/*', (route) =>
      route.fulfill({ status: 507, contentType: 'application/json', body: JSON.stringify({ code: 'DISK_FULL', error: 'the farm server has no disk space left' }) }),
    );
    await page.locator('#project-folder').setInputFiles(project);
    await page.locator('[data-testid="project-picker"]').getByLabel('Main .blend').selectOption('shots/main.blend');
    await page.getByRole('button', { name: 'Submit project' }).click();
    const error = page.locator('[data-testid="upload-error"]');
    await error.waitFor();
    assert.match(await error.innerText(), /^project\/shots\/main\.blend was not accepted: \S+ could not be uploaded: the farm server has no disk space left$/);
    assert.deepEqual(await (await fetch(`${url}/api/jobs`)).json(), [], 'no job');
    await page.unroute('**/api/files/*');
    filesSent.length = 0; // refused by the page's route: none reached the server
  });

  it('sends a dropped folder: every file once, the main .blend chosen, absolute paths found on the worker', async () => {
    await page.getByLabel('Review the scene settings before rendering').uncheck();
    await dropOnPage([project]);
    await submitChosen();
    const job = await renderedJob();

    assert.equal(filesSent.length, OTHER_FILES, 'each file besides the .blend was sent once');
    const manifest = await farm.server.farm.project(job.projectId!);
    assert.equal(manifest.main, 'shots/main.blend');
    assert.equal(manifest.root, madeAt, 'the root is read from the absolute paths in the .blend');
    assert.deepEqual(manifest.files.map((f) => f.path).sort(), [
      'abs/abs_tex.png',
      'lib/props.blend',
      'lib/tex_lib/lib_tex.png',
      'seq/f_0001.png',
      'shots/blendcache_main/456D6974746572_000001_00.bphys',
      'tex/checker.png',
      'udim/tile.1001.png',
      'udim/tile.1002.png',
    ]);
    assert.deepEqual([...watch.foreign, ...watch.errors], []);
  });

  it('sends a .zip of the same folder: the files already on the server are not sent again', async () => {
    const zip = path.join(root, 'project.zip');
    await run('python3', ['-m', 'zipfile', '-c', zip, 'project'], { cwd: root });
    const before = filesSent.length;
    await page.goto(`${url}/`);
    await page.locator('.live[data-live="on"]').waitFor();
    await page.getByLabel('Review the scene settings before rendering').uncheck();

    // Slow the .blend's upload so the progress (and what was reused) can be seen.
    const cdp = await page.context().newCDPSession(page);
    const blendSize = statSync(path.join(project, 'shots', 'main.blend')).size;
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: Math.round(blendSize / 1.5) });
    await page.locator('#blend-file').setInputFiles(zip);
    await submitChosen();
    const reused = page.locator('[data-testid="upload-progress"] [data-testid="reused-files"]');
    await reused.waitFor({ timeout: 20_000 });
    assert.equal((await reused.innerText()).trim(), `· ${OTHER_FILES} files already on the server`);
    // Only the .blend is sent, so the bar's total is its size.
    const max = Number(await page.locator('[data-testid="upload-progress"] [role="progressbar"]').getAttribute('aria-valuemax'));
    assert.equal(max, blendSize);
    await screenshot(page, 'submit-project-reused');
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });

    await renderedJob();
    assert.equal(filesSent.length, before, 'no project file was sent again');
    assert.deepEqual([...watch.foreign, ...watch.errors], []);
  });

  it('adds the missing files to a job held for them: the folder it came from, nothing sent twice', async () => {
    // The .blend alone: the preflight holds the job for the files it names.
    await page.goto(`${url}/`);
    await page.locator('.live[data-live="on"]').waitFor();
    await page.getByLabel('Review the scene settings before rendering').uncheck();
    await page.locator('#blend-file').setInputFiles(path.join(project, 'shots', 'main.blend'));
    await page.locator('[data-testid="submitted"]', { hasText: 'was added to the queue' }).waitFor({ timeout: 30_000 });
    const job = ((await (await fetch(`${url}/api/jobs`)).json()) as Job[]).at(-1)!;
    assert.equal((await waitForJob(farm.server, job.id, ['paused'], 60_000)).projectId, null);
    await page.goto(`${url}/#/jobs/${job.id}`);
    const panel = page.locator('[data-testid="add-files"]');
    await panel.waitFor();
    assert.match(await page.locator('[data-testid="job-notice"]').innerText(), /held: the scene uses \d+ files the project lacks/);

    // A folder without the job's .blend is refused with a reason.
    await page.locator('#add-files-folder').setInputFiles(path.join(project, 'lib'));
    assert.match(await panel.locator('[role="alert"]').innerText(), /does not hold this job's \.blend/);

    const before = filesSent.length;
    await page.locator('#add-files-folder').setInputFiles(project);
    const done = await waitForJob(farm.server, job.id, ['completed', 'failed'], 120_000);
    assert.equal(done.state, 'completed', done.error ?? done.notice ?? '');
    assert.deepEqual(done.scene?.problems, [], 'the preflight found every file this time');
    assert.ok(done.projectId, 'the job has its project now');
    // Earlier tests sent the project already; alone, this one sends each file once.
    assert.ok(filesSent.length - before === 0 || filesSent.length - before === OTHER_FILES, `${filesSent.length - before} files sent`);
    assert.equal(new Set(filesSent).size, filesSent.length, 'no file sent twice');
    await page.locator('[data-testid="add-files"]').waitFor({ state: 'detached' });
    assert.deepEqual([...watch.foreign, ...watch.errors], []);
  });
});
