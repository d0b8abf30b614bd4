import assert from 'node:assert/strict';
import { openAsBlob, statSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { CLIENT_HEADER, type Job, type JobDetail } from '../src/protocol/index.ts';
import { launchBrowser, screenshot, stopServer, watchPage, type PageWatch, type TestBrowser } from './helpers/browser.ts';
import { startTestFarm, submitBlend, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { makeTestScene } from '../testkit/scenes.ts';

/**
 * The web UI in a real (headless) Chromium against a real farm: a server with one real
 * Blender worker. Everything a person does goes through the page: upload, review, start,
 * watch, cancel, steer workers, lose the connection, log in.
 */
describe('web interface (Chromium, real farm)', () => {
  let farm: TestFarm;
  let url: string;
  let scene: string;
  let chrome: TestBrowser;
  let page: Page;
  let watch: PageWatch;
  let firstJobId: string;

  const api = async <T>(path: string): Promise<T> => (await fetch(`${url}${path}`)).json() as Promise<T>;
  const jobs = () => api<Job[]>('/api/jobs');

  before(async () => {
    [farm, scene, chrome] = await Promise.all([
      startTestFarm({ workers: 1, worker: { allow_scripts: true } }), // one test submits a job that allows scripts
      makeTestScene({ frames: '1-6', width: 160, height: 90, samples: 2 }),
      launchBrowser(),
    ]);
    url = farm.server.httpUrl;
    page = await chrome.browser.newPage({ viewport: { width: 1280, height: 860 } });
    watch = watchPage(page, new URL(url).hostname);
  });

  after(async () => {
    await chrome?.close();
    await farm?.close();
  });

  const noStrayTraffic = () => {
    assert.deepEqual(watch.foreign, [], 'the page only talks to the farm server');
    assert.deepEqual(watch.errors, [], 'the page logs no errors');
  };

  it('uploads a .blend with progress, shows the probed settings for editing, and starts what was chosen', async () => {
    await page.goto(`${url}/`);
    await page.locator('.live[data-live="on"]').waitFor();
    await page.getByRole('heading', { name: 'Submit a scene' }).waitFor();

    // Slow the upload down so its progress bar can be seen moving.
    const cdp = await page.context().newCDPSession(page);
    const size = statSync(scene).size;
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false,
      latency: 0,
      downloadThroughput: -1,
      uploadThroughput: Math.round(size / 1.5),
    });
    await page.locator('#blend-file').setInputFiles(scene);
    const bar = page.locator('[data-testid="upload-progress"] [role="progressbar"]');
    await bar.waitFor();
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="upload-progress"] [role="progressbar"]')?.getAttribute('aria-valuenow')) > 0);
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });

    // The worker reads the scene; its settings appear, editable.
    const form = page.locator('[data-testid="submit"] [data-testid="held-settings"]');
    await form.waitFor({ timeout: 30_000 });
    const facts = await form.locator('dl.facts').innerText();
    assert.match(facts, /1–6/);
    assert.match(facts, /24 fps/);
    assert.match(facts, /160 × 90 at 100%/);
    assert.equal(await form.getByLabel('Last frame').inputValue(), '6');
    await screenshot(page, 'submit-probed');

    await form.getByLabel('Job name').fill('shot 010');
    await form.getByLabel('Last frame').fill('4');
    await form.getByLabel('Samples').fill('1');
    await form.getByRole('button', { name: 'Start rendering' }).click();
    await page.locator('[data-testid="submitted"]', { hasText: '“shot 010” was added to the queue' }).waitFor();

    const [job] = await jobs();
    firstJobId = job!.id;
    assert.equal(job!.name, 'shot 010');
    assert.deepEqual(job!.frames, { start: 1, end: 4, step: 1 });
    assert.equal(job!.overrides.samples, 1);
    assert.notEqual(job!.state, 'paused');
    noStrayTraffic();
  });

  it('shows the job page: frames turning done, thumbnails, the latest frame, logs and the video', async () => {
    await page.getByRole('link', { name: 'Open the job' }).click();
    await page.waitForURL(`**/#/jobs/${firstJobId}`);
    await page.getByRole('heading', { name: 'shot 010' }).waitFor();
    assert.equal(await page.locator('.cell').count(), 4);

    // Frames turn done as the worker renders them, live, without reloading.
    await page.locator('.cell[data-state="done"]').nth(3).waitFor({ timeout: 60_000 });
    await page.waitForFunction(() => {
      const thumbs = [...document.querySelectorAll<HTMLImageElement>('.cell img.thumb')];
      return thumbs.length === 4 && thumbs.every((img) => img.complete && img.naturalWidth > 0);
    });
    const latest = page.locator('[data-testid="latest-frame"]');
    await latest.waitFor();
    await page.waitForFunction(() => (document.querySelector<HTMLImageElement>('[data-testid="latest-frame"]')?.naturalWidth ?? 0) > 0);
    assert.match((await latest.getAttribute('src')) ?? '', /preview\?size=large$/);

    // The video plays in the page once encoded, with the downloads beside it.
    const video = page.locator('video[data-testid="video"]');
    await video.waitFor({ timeout: 60_000 });
    await page.waitForFunction(() => {
      const v = document.querySelector<HTMLVideoElement>('video[data-testid="video"]');
      return v !== null && v.readyState >= 1 && v.duration > 0 && v.videoWidth === 160;
    });
    assert.equal(await page.getByRole('link', { name: 'Download MP4' }).getAttribute('href'), `/api/jobs/${firstJobId}/video`);
    assert.equal(await page.getByRole('link', { name: 'Download all frames (.zip)' }).getAttribute('href'), `/api/jobs/${firstJobId}/frames.zip`);
    await page.locator('.badge[data-state="completed"]').first().waitFor();

    // A frame's details and Blender log open in a dialog that Escape closes.
    const cell = page.locator('.cell[data-frame="2"]');
    await cell.click();
    const dialog = page.getByRole('dialog', { name: 'Frame 2' });
    await dialog.waitFor();
    await dialog.locator('[data-testid="frame-log"]').waitFor();
    assert.match(await dialog.locator('[data-testid="frame-log"]').innerText(), /Fra:2 /);
    assert.match(await dialog.innerText(), /worker1/);
    assert.equal(await dialog.getByRole('link', { name: 'Download frame 2' }).getAttribute('href'), `/api/jobs/${firstJobId}/frames/2`);
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'detached' });
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('data-frame')), '2', 'focus returns to the frame');

    await screenshot(page, 'job-page');
    const dark = await chrome.browser.newPage({ viewport: { width: 1280, height: 860 }, colorScheme: 'dark' });
    const darkWatch = watchPage(dark, new URL(url).hostname);
    await dark.goto(`${url}/#/jobs/${firstJobId}`);
    await dark.locator('video[data-testid="video"]').waitFor();
    await dark.waitForFunction(() => [...document.querySelectorAll<HTMLImageElement>('.cell img.thumb')].every((i) => i.complete));
    await screenshot(dark, 'job-page-dark');
    await dark.close();
    assert.deepEqual([...darkWatch.foreign, ...darkWatch.errors], []);
    noStrayTraffic();
  });

  it('shows a job page before the live connection is up, then fetches the frames that changed before it listened', async () => {
    const { body } = await submitBlend(url, await openAsBlob(scene), { hold: 'true', frames: '1-3', name: 'early frames' });
    await waitForJob(farm.server, body.id, ['paused']);
    const early = await chrome.browser.newPage({ viewport: { width: 1280, height: 860 } });
    const earlyWatch = watchPage(early, new URL(url).hostname);
    const frameRequests: string[] = [];
    early.on('request', (request) => {
      const { pathname, search } = new URL(request.url());
      if (pathname === `/api/jobs/${body.id}/frames`) frameRequests.push(search);
    });
    // The live connection waits for /api/info: held back, the socket cannot open.
    let letInfoThrough: () => void = () => {};
    const infoHeld = new Promise<void>((resolve) => (letInfoThrough = resolve));
    await early.route('**/api/info', async (route) => {
      await infoHeld;
      await route.continue();
    });
    try {
      await early.goto(`${url}/#/jobs/${body.id}`);
      await early.locator('.cell[data-state="queued"]').nth(2).waitFor();
      assert.equal(await early.locator('.live[data-live="off"]').count(), 1, 'the frames show before the live connection listens');

      // Every frame renders while the page is not listening: only the catch-up can bring that.
      await fetch(`${url}/api/jobs/${body.id}/resume`, { method: 'POST', headers: { [CLIENT_HEADER]: 'test' } });
      await waitForJob(farm.server, body.id, ['completed'], 60_000);
      assert.equal(await early.locator('.cell[data-state="done"]').count(), 0);
      letInfoThrough();
      await early.locator('.live[data-live="on"]').waitFor();
      await early.locator('.cell[data-state="done"]').nth(2).waitFor({ timeout: 10_000 });
      assert.equal(frameRequests.length, 2, `frame requests: ${JSON.stringify(frameRequests)}`);
      assert.equal(frameRequests[0], '', 'first the whole list');
      assert.match(frameRequests[1]!, /^\?since=/, 'then only what changed since');
      assert.deepEqual([...earlyWatch.foreign, ...earlyWatch.errors], []);
    } finally {
      letInfoThrough();
      await early.close();
    }
  });

  it('queues a second job, changes its priority, cancels it after confirming, and refuses a file that is not a .blend', async () => {
    await page.getByRole('link', { name: 'Queue', exact: true }).click();
    await page.getByRole('heading', { name: 'Submit a scene' }).waitFor();
    await page.getByLabel('Review the scene settings before rendering').uncheck();
    await page.getByLabel('Allow Python scripts embedded in the file').check();
    await page.getByText('Override settings at upload').click();
    await page.getByLabel('Job name').fill('shot 020');
    await page.getByLabel('Frames', { exact: true }).fill('1-400');
    await page.locator('#blend-file').setInputFiles(scene);
    await page.locator('[data-testid="submitted"]', { hasText: '“shot 020” was added to the queue' }).waitFor();

    const row = page.locator('.job-row[data-job]', { hasText: 'shot 020' });
    await row.getByText('Runs scripts').waitFor();
    await row.locator('[data-state="rendering"]').first().waitFor({ timeout: 30_000 });
    await page.waitForFunction(() => /[1-9]\d*\/400 frames/.test(document.querySelector('.job-row[data-state="rendering"] .progress-text')?.textContent ?? ''));
    await screenshot(page, 'queue');

    const priority = row.getByLabel('Priority of shot 020');
    await priority.fill('5');
    await priority.press('Enter');
    await page.getByText('now has priority 5').waitFor();
    const second = (await jobs()).find((j) => j.name === 'shot 020')!;
    assert.equal(second.priority, 5);
    assert.equal(second.allowScripts, true);

    // The workers page shows what the worker is doing, live.
    await page.getByRole('link', { name: /^Workers/ }).click();
    const worker = page.locator('.worker-row[data-worker]', { hasText: 'worker1' });
    await worker.locator('.w-current', { hasText: /Rendering frame \d+ of shot 020 \d+%/ }).waitFor();
    await screenshot(page, 'workers');
    await page.getByRole('link', { name: 'Queue', exact: true }).click();

    // Cancelling asks first; Escape keeps the job.
    await row.getByRole('button', { name: 'Cancel shot 020' }).click();
    const confirm = page.getByRole('dialog', { name: 'Cancel this job?' });
    await confirm.waitFor();
    await page.keyboard.press('Escape');
    await confirm.waitFor({ state: 'detached' });
    assert.ok(['queued', 'rendering'].includes((await api<Job>(`/api/jobs/${second.id}`)).state));
    await row.getByRole('button', { name: 'Cancel shot 020' }).click();
    await confirm.getByRole('button', { name: 'Cancel job' }).click();
    await page.locator('.job-row[data-state="cancelled"]', { hasText: 'shot 020' }).waitFor();
    assert.equal((await api<Job>(`/api/jobs/${second.id}`)).state, 'cancelled');

    // Deleting asks too, and the row goes.
    await page.locator('.job-row', { hasText: 'shot 020' }).getByRole('button', { name: 'Delete shot 020' }).click();
    await page.getByRole('dialog', { name: 'Delete this job?' }).getByRole('button', { name: 'Delete job' }).click();
    await page.locator('.job-row', { hasText: 'shot 020' }).waitFor({ state: 'detached' });
    assert.equal((await fetch(`${url}/api/jobs/${second.id}`)).status, 404);

    // A file that is not a .blend: the server's own reason is shown.
    watch.expect(/status of 415/);
    await page.locator('#blend-file').setInputFiles({ name: 'notes.blend', mimeType: 'application/octet-stream', buffer: Buffer.from('just some text\n') });
    const refusal = page.locator('[data-testid="upload-error"]');
    await refusal.waitFor();
    assert.match(await refusal.innerText(), /notes\.blend was not accepted: "notes\.blend" is not a Blender file/);
    noStrayTraffic();
  });

  it('keeps a 100,000-frame job light: only the visible tiles exist, and any frame can be reached', async () => {
    const { body } = await submitBlend(url, await openAsBlob(scene), { hold: 'true', frames: '1-100000', name: 'long shot' });
    await waitForJob(farm.server, body.id, ['paused']);
    await page.goto(`${url}/#/jobs/${body.id}`);
    await page.locator('.legend', { hasText: '100,000 queued' }).waitFor({ timeout: 30_000 });
    const tiles = await page.locator('.cell').count();
    assert.ok(tiles > 0 && tiles < 400, `${tiles} tiles in the page for 100,000 frames`);
    await page.getByLabel('Go to frame').fill('54321');
    await page.getByRole('button', { name: 'Go', exact: true }).click();
    await page.waitForFunction(() => document.activeElement?.getAttribute('data-frame') === '54321');
    assert.ok((await page.locator('.cell').count()) < 400);
    await screenshot(page, 'job-100k-frames', false);
    await page.keyboard.press('Enter');
    await page.getByRole('dialog', { name: 'Frame 54321' }).waitFor();
    await page.keyboard.press('Escape');
    const removed = await fetch(`${url}/api/jobs/${body.id}`, { method: 'DELETE', headers: { [CLIENT_HEADER]: 'test' } });
    assert.equal(removed.status, 204);
    await page.getByRole('heading', { name: 'Job deleted' }).waitFor();
    noStrayTraffic();
  });

  it('splits a still into tiles: the frame fills in tile by tile, then shows stitched; says why a glare scene is not split', async () => {
    const [still, glare] = await Promise.all([
      // Enough samples that finished tiles stay on screen a few seconds before the stitch, even on a busy machine.
      makeTestScene({ frames: '1', width: 192, height: 128, samples: 96, detail: true }),
      makeTestScene({ frames: '1', width: 192, height: 128, samples: 8, glare: true }),
    ]);
    // A second worker, so tiles of the one frame render side by side.
    const second = farm.addWorker('worker2');
    const workersPage = await chrome.browser.newPage({ viewport: { width: 1280, height: 600 } });
    const workersWatch = watchPage(workersPage, new URL(url).hostname);
    // The last tile may finish (and the frame be stitched) while the page asks for a tile's preview.
    watch.expect(/status of 404 .*\/tiles\/\d+\/preview/);
    try {
      await workersPage.goto(`${url}/#/workers`);
      const secondReady = workersPage.locator('.worker-row[data-worker][data-state="idle"]', { hasText: 'worker2' }).waitFor({ timeout: 30_000 });
      secondReady.catch(() => {}); // awaited below, once the form is filled

      await page.goto(`${url}/#/`);
      await page.locator('.live[data-live="on"]').waitFor();
      await page.getByLabel('Review the scene settings before rendering').uncheck();
      await page.getByText('Override settings at upload').click();
      await page.getByLabel('Job name').fill('still 030');
      // A typed grid is checked with the server's own rules before anything is sent.
      const tiles = page.getByLabel('Tiles', { exact: true });
      await tiles.selectOption('other');
      await page.getByLabel('Tiles per frame: a count or a grid').fill('9x9');
      await page.locator('#ov-tiles-hint', { hasText: 'at most 8x8' }).waitFor();
      await tiles.selectOption('2x2');
      assert.equal(await page.getByLabel('Force tiles').isChecked(), false);

      // The workers page names the tile a worker renders, live.
      const tileOnWorkers = workersPage
        .locator('.w-current', { hasText: /frame 1 · tile [1-4]\/4 of still 030 \d+%/ })
        .first()
        .waitFor({ timeout: 120_000 })
        .then(() => screenshot(workersPage, 'workers-tiles'))
        .then(() => null, (error: Error) => error);

      await secondReady;
      await page.locator('#blend-file').setInputFiles(still);
      await page.locator('[data-testid="submitted"]', { hasText: '“still 030” was added to the queue' }).waitFor();
      const job = (await jobs()).find((j) => j.name === 'still 030')!;
      assert.deepEqual(job.tiling.requested, { cols: 2, rows: 2 });
      await page.getByRole('link', { name: 'Open the job' }).click();
      await page.getByRole('heading', { name: 'still 030' }).waitFor();
      assert.equal(await page.getByTestId('job-tiling').innerText(), '2 × 2 grid');

      // While the frame is split, finished tiles appear at their place, before the frame is done.
      const filling = await page.waitForFunction(
        () => {
          const frame = document.querySelector('[data-testid="tiled-frame"]');
          const shown = [...(frame?.querySelectorAll<HTMLImageElement>('.tile[data-state="done"] img.loaded') ?? [])].filter(
            (i) => i.naturalWidth > 0 && getComputedStyle(i).opacity === '1', // faded in
          );
          if (!frame || shown.length === 0) return null;
          const box = frame.getBoundingClientRect();
          const tile = shown[0]!.parentElement!.getBoundingClientRect();
          return {
            tiles: frame.querySelectorAll('.tile').length,
            images: shown.length,
            states: [...frame.querySelectorAll('.tile')].map((t) => t.getAttribute('data-state')),
            aspect: box.width / box.height,
            tileShare: [tile.width / box.width, tile.height / box.height],
            cell: document.querySelector('.cell[data-frame="1"]')?.getAttribute('data-state'),
            badge: document.querySelector('.cell[data-frame="1"] .cell-tiles')?.textContent ?? null,
          };
        },
        null,
        { timeout: 120_000, polling: 100 },
      );
      await screenshot(page, 'tiles-filling');
      const seen = (await filling.jsonValue())!;
      assert.equal(seen.tiles, 4);
      assert.ok(seen.images >= 1 && seen.images < 4, `${seen.images} tile images while the frame renders`);
      assert.ok(Math.abs(seen.aspect - 192 / 128) < 0.02, `the frame area keeps the 3:2 frame shape (${seen.aspect})`);
      assert.ok(seen.tileShare.every((share) => Math.abs(share - 0.5) < 0.02), `a tile covers a quarter of the frame (${seen.tileShare})`);
      assert.equal(seen.cell, 'rendering');
      assert.match(seen.badge ?? '', /^[1-4]\/4 tiles$/);
      assert.ok(seen.states.every((s) => ['queued', 'rendering', 'done'].includes(s!)));

      // Once the server has stitched the tiles, the frame shows as one ordinary preview.
      await page.locator('.cell[data-frame="1"][data-state="done"]').waitFor({ timeout: 120_000 });
      await page.waitForFunction(() => (document.querySelector<HTMLImageElement>('[data-testid="latest-frame"]')?.naturalWidth ?? 0) > 0);
      assert.equal(await page.locator('[data-testid="tiled-frame"]').count(), 0);
      assert.match((await page.locator('[data-testid="latest-frame"]').getAttribute('src')) ?? '', /frames\/1\/preview\?size=large$/);
      assert.match(await page.locator('.latest figcaption').innerText(), /stitched from tiles/);
      await page.locator('.badge[data-state="completed"]').first().waitFor({ timeout: 60_000 });
      await screenshot(page, 'tiles-done');
      const shownTile = await tileOnWorkers;
      assert.equal(shownTile, null, `the workers page showed the tile: ${shownTile?.message}`);

      // A scene with compositor glare: the review step says why its frames stay whole.
      await page.getByRole('link', { name: 'Queue', exact: true }).click();
      await page.locator('#blend-file').setInputFiles(glare);
      const form = page.locator('[data-testid="submit"] [data-testid="held-settings"]');
      await form.waitFor({ timeout: 30_000 });
      const note = form.locator('[data-testid="tiling-note"]');
      assert.match(await note.innerText(), /Frames will be rendered whole:[\s\S]*Glare/);
      await note.scrollIntoViewIfNeeded();
      await screenshot(page, 'submit-tile-blockers', false);
      const held = (await jobs()).find((j) => j.state === 'paused' && j.tiling.blockers.length > 0)!;
      assert.match(held.tiling.blockers.join(' '), /Glare/);
      const removed = await fetch(`${url}/api/jobs/${held.id}`, { method: 'DELETE', headers: { [CLIENT_HEADER]: 'test' } });
      assert.equal(removed.status, 204);
      noStrayTraffic();
      assert.deepEqual([...workersWatch.foreign, ...workersWatch.errors], []);
    } finally {
      await workersPage.close();
      await second.shutdown();
    }
  });

  it('lists workers, disables and enables one, and shows it offline when it stops', async () => {
    await page.getByRole('link', { name: /^Workers/ }).click();
    const row = page.locator('.worker-row[data-worker]', { hasText: 'worker1' });
    await row.waitFor();
    await page.waitForFunction(() => document.querySelector('.worker-row[data-worker]')?.getAttribute('data-state') === 'idle');
    const text = await row.innerText();
    assert.match(text, /Idle/);
    assert.match(text, /Enabled/);
    assert.match(text, /Blender \d/);
    await row.getByRole('button', { name: 'Disable worker1' }).click();
    await row.getByText('Disabled').waitFor();
    await row.getByRole('button', { name: 'Enable worker1' }).click();
    await row.getByText('Enabled').waitFor();

    await farm.workers[0]!.shutdown();
    await row.getByText('Offline').waitFor({ timeout: 20_000 });
    assert.equal(await row.getAttribute('data-state'), 'offline');
    await page.getByRole('link', { name: 'Queue', exact: true }).click();
    await page.locator('[data-testid="no-workers"]').waitFor();
    noStrayTraffic();
  });

  it('reads well at phone width', async () => {
    const phone = await chrome.browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    const phoneWatch = watchPage(phone, new URL(url).hostname);
    for (const [name, path] of [
      ['phone-queue', '/#/'],
      ['phone-job', `/#/jobs/${firstJobId}`],
      ['phone-workers', '/#/workers'],
    ] as const) {
      await phone.goto(`${url}${path}`);
      await phone.locator('.live[data-live="on"]').waitFor();
      await phone.locator(path === '/#/' ? '.job-row[data-job]' : path === '/#/workers' ? '.worker-row[data-worker]' : '.cell img.thumb').first().waitFor();
      const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${name}: the page is ${overflow}px wider than the phone`);
      await screenshot(phone, name);
    }
    await phone.close();
    assert.deepEqual([...phoneWatch.foreign, ...phoneWatch.errors], []);
  });

  it('shows a banner when the live connection drops, and reconnects and reloads by itself', async () => {
    await page.goto(`${url}/#/jobs/${firstJobId}`);
    await page.locator('.live[data-live="on"]').waitFor();
    await page.locator('.cell').first().waitFor();
    // While the server is down the browser reports the refused connections; that is expected.
    watch.expect(/WebSocket connection to .* failed|ERR_CONNECTION_REFUSED|Failed to load resource/);
    const restart = await stopServer(farm);
    const banner = page.locator('[data-testid="connection-banner"]');
    await banner.waitFor({ timeout: 15_000 });
    assert.match(await banner.innerText(), /Live updates interrupted/);
    await page.locator('.live[data-live="off"]').waitFor();
    await screenshot(page, 'reconnecting', false);

    const reloaded: string[] = [];
    page.on('request', (request) => reloaded.push(new URL(request.url()).pathname));
    await restart();
    await banner.waitFor({ state: 'detached', timeout: 30_000 });
    await page.locator('.live[data-live="on"]').waitFor();
    assert.ok(reloaded.includes('/api/jobs'), 'the job list is fetched again after reconnecting');
    assert.ok(reloaded.includes(`/api/jobs/${firstJobId}/frames`), 'the open job\'s frames are fetched again');
    assert.equal(await page.locator('.cell[data-state="done"]').count(), 4);
    assert.deepEqual(watch.foreign, []);
    assert.deepEqual(watch.errors, []);
  });

  it('asks for the farm token when the server does not trust this machine', async () => {
    const guarded = await startTestFarm({ server: { trust_loopback: false } });
    try {
      const context = await chrome.browser.newContext({ viewport: { width: 1280, height: 860 } });
      const login = await context.newPage();
      const loginWatch = watchPage(login, new URL(guarded.server.httpUrl).hostname);
      loginWatch.expect(/status of 401/);
      await login.goto(`${guarded.server.httpUrl}/`);
      const token = login.getByLabel('User token');
      await token.waitFor();
      await screenshot(login, 'login');
      await token.fill('not-the-right-token');
      await login.getByRole('button', { name: 'Sign in' }).click();
      await login.getByRole('alert').getByText('That token is not right').waitFor();
      await token.fill(guarded.server.tokens.user!);
      await login.getByRole('button', { name: 'Sign in' }).click();
      await login.getByRole('heading', { name: 'Submit a scene' }).waitFor();
      await login.locator('.live[data-live="on"]').waitFor();
      const cookies = await context.cookies();
      assert.ok(cookies.some((c) => c.name === 'archenland_session' && c.httpOnly));
      // The session cookie also lets the page act on the farm, with the CSRF header.
      const status = await login.evaluate(
        async ([header]) => (await fetch('/api/jobs', { headers: { [header!]: 'web' } })).status,
        [CLIENT_HEADER],
      );
      assert.equal(status, 200);
      await context.close();
      assert.deepEqual([...loginWatch.foreign, ...loginWatch.errors], []);
    } finally {
      await guarded.close();
    }
  });

  it('left the first job completed on the farm', async () => {
    const detail = await api<JobDetail>(`/api/jobs/${firstJobId}`);
    assert.equal(detail.state, 'completed');
    assert.deepEqual(
      detail.frameList.map((f) => f.state),
      ['done', 'done', 'done', 'done'],
    );
    await waitForJob(farm.server, firstJobId, ['completed'], 1000);
  });
});
