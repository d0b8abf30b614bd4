/**
 * The web UI follows progress from the slim `progress` changes (the server no longer sends
 * whole worker and frame views for it): the job page's frame grid and frame dialog, and the
 * workers page, show each report's percent; a frame that finished stays finished when a late
 * report comes. Real (headless) Chromium, real server, a scripted worker (no Blender).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { fakeBlend } from '../testkit/api.ts';
import { TINY_PNG } from '../testkit/fakes.ts';
import { startTestFarm, submitBlend, type TestFarm } from '../testkit/farm.ts';
import { launchBrowser, watchPage, type PageWatch, type TestBrowser } from './helpers/browser.ts';
import { ScriptedWorker } from './helpers/scripted-worker.ts';

describe('the web UI shows progress as workers report it (Chromium, scripted worker)', () => {
  let farm: TestFarm;
  let chrome: TestBrowser;
  let page: Page;
  let watch: PageWatch;
  let worker: ScriptedWorker;

  before(async () => {
    [farm, chrome] = await Promise.all([startTestFarm(), launchBrowser()]);
    worker = await ScriptedWorker.connect(farm, { name: 'reporter' });
    page = await chrome.browser.newPage({ viewport: { width: 1280, height: 860 } });
    watch = watchPage(page, new URL(farm.server.httpUrl).hostname);
  });
  after(async () => {
    await chrome?.close();
    await farm?.close();
  });

  it('moves the frame grid, the frame dialog and the workers page with each report, and keeps a done frame done', async () => {
    const { status, body } = await submitBlend(farm.server.httpUrl, new Blob([new Uint8Array(fakeBlend())]));
    assert.equal(status, 201);
    const jobId = body.id as string;
    worker.send({ type: 'ready' });
    const work = await worker.next('render');
    const report = (percent: number) => worker.send({ type: 'progress', jobId, frame: work.frame, percent });

    await page.goto(`${farm.server.httpUrl}/#/jobs/${jobId}`);
    // Reports go to pages that are listening: one sent before the page's live connection opens reaches no one.
    await page.locator('.live[data-live="on"]').waitFor();
    const cell = page.locator(`.cell[data-frame="${work.frame}"]`);
    await page.waitForFunction((frame) => document.querySelector(`.cell[data-frame="${frame}"]`)?.getAttribute('data-state') === 'rendering', work.frame);
    report(30);
    await page.waitForFunction((frame) => /rendering 30%/.test(document.querySelector(`.cell[data-frame="${frame}"]`)?.getAttribute('aria-label') ?? ''), work.frame);
    await cell.click();
    const dialog = page.getByRole('dialog', { name: `Frame ${work.frame}` });
    await dialog.getByText('rendering 30%').waitFor();
    report(65);
    await dialog.getByText('rendering 65%').waitFor();
    await page.keyboard.press('Escape');

    await page.getByRole('link', { name: /^Workers/ }).click();
    const row = page.locator(`.worker-row[data-worker="${worker.workerId}"]`);
    await row.locator('.percent', { hasText: '65%' }).waitFor();
    report(80);
    await row.locator('.percent', { hasText: '80%' }).waitFor();

    const uploaded = await worker.upload(`/api/worker/jobs/${jobId}/frames/${work.frame}`, TINY_PNG);
    assert.equal(uploaded.status, 200);
    await page.waitForFunction((id) => document.querySelector(`.worker-row[data-worker="${id}"]`)?.getAttribute('data-state') === 'idle', worker.workerId);
    report(95); // a late line: the worker said it after its upload
    await page.goBack();
    await page.waitForFunction((frame) => document.querySelector(`.cell[data-frame="${frame}"]`)?.getAttribute('data-state') === 'done', work.frame);
    await new Promise((resolve) => setTimeout(resolve, 1500)); // past the next progress batch
    assert.equal(await cell.getAttribute('data-state'), 'done');
    assert.equal(await row.count(), 0, 'the workers page is left');
    assert.deepEqual(watch.errors, [], 'the page logs no errors');
  });
});
