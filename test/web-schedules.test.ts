/**
 * The workers page in a real (headless) Chromium shows a worker outside the hours of its
 * schedules as "Asleep until HH:MM", with the schedules that keep it asleep, and follows a
 * schedule set for a tag from the CLI live. Real server, real workers (real Blender); the
 * workers read their schedules at noon today, so "until 14:00" and "until 18:00" are the
 * same day, whatever the time the test runs.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Locator, Page } from 'playwright-core';
import { apiPath, type Worker } from '../src/protocol/index.ts';
import { getJson } from '../testkit/api.ts';
import { startTestFarm, type TestFarm } from '../testkit/farm.ts';
import { launchBrowser, screenshot, watchPage, type PageWatch, type TestBrowser } from './helpers/browser.ts';
import { runCli, until } from './helpers/processes.ts';

const today = new Date();
const NOON = new Date(today.getFullYear(), today.getMonth(), today.getDate(), 12, 0);

describe('the workers page shows when sleeping workers wake (Chromium, real farm)', () => {
  let farm: TestFarm;
  let chrome: TestBrowser;
  let page: Page;
  let watch: PageWatch;

  const cli = (args: string[]) => runCli(farm.server, args);
  const idOf = async (name: string) => (await getJson<Worker[]>(farm.server.httpUrl, farm.server.tokens.user!, apiPath('listWorkers'))).find((w) => w.name === name)?.id;
  const row = async (name: string): Promise<Locator> => page.locator(`[data-worker="${await idOf(name)}"]`);
  /** Waits until the worker's state cell reads exactly `text`. */
  const stateReads = async (name: string, text: string) => {
    const cell = (await row(name)).getByTestId('worker-state');
    await cell.filter({ hasText: text }).waitFor({ timeout: 15_000 });
    assert.equal((await cell.innerText()).replace(/\s+/g, ' ').trim(), text);
  };

  before(async () => {
    [farm, chrome] = await Promise.all([startTestFarm({ worker: { prewarm_blender: false } }), launchBrowser()]);
    // desk-1's owner lets it render 14:00-23:00; lab-1 has no hours of its own. Both are in room 2.
    farm.addWorker('desk-1', { schedule: 'Mon-Sun 14:00-23:00', tags: ['room-2'] }, () => NOON);
    farm.addWorker('lab-1', { tags: ['room-2'] }, () => NOON);
    await until(async () => (await idOf('desk-1')) !== undefined && (await idOf('lab-1')) !== undefined, 30_000, 'both workers connected');
    // The page shows times in its own time zone: the one the workers read their clock in.
    const context = await chrome.browser.newContext({ viewport: { width: 1280, height: 700 }, timezoneId: Intl.DateTimeFormat().resolvedOptions().timeZone });
    page = await context.newPage();
    watch = watchPage(page, new URL(farm.server.httpUrl).hostname);
  });

  after(async () => {
    await chrome?.close();
    await farm?.close();
  });

  it('shows "Asleep until 14:00" for a worker whose own schedule excludes now, and "Idle" for one awake', async () => {
    await page.goto(`${farm.server.httpUrl}/#/workers`);
    await stateReads('desk-1', 'Asleep until 14:00 · its schedule');
    await stateReads('lab-1', 'Idle');
    await screenshot(page, 'workers-asleep');
  });

  it("follows a schedule set for the workers' tag from the CLI, and its clearing, without a reload", async () => {
    const set = await cli(['tag-schedule', 'room-2', 'Mon-Sun 18:00-20:00']);
    assert.equal(set.code, 0, set.stderr);
    // lab-1 sleeps by the room's hours; desk-1 by both, until the first hour both allow.
    await stateReads('lab-1', 'Asleep until 18:00 · tag room-2');
    await stateReads('desk-1', 'Asleep until 18:00 · its schedule and tag room-2');
    await screenshot(page, 'workers-asleep-tag-schedule');

    const cleared = await cli(['tag-schedule', 'room-2', '--clear']);
    assert.equal(cleared.code, 0, cleared.stderr);
    await stateReads('lab-1', 'Idle');
    await stateReads('desk-1', 'Asleep until 14:00 · its schedule');
    assert.deepEqual(watch.foreign, [], 'the page only talks to the farm server');
    assert.deepEqual(watch.errors, [], 'the page logs no errors');
  });
});
