import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { serverSchema, type ServerSettings } from '../../src/config/index.ts';
import { startServer } from '../../src/server/index.ts';
import { silentLogger, createLogger } from '../../src/util/log.ts';
import type { TestFarm } from '../../testkit/farm.ts';

/** Debian's Chromium (installed by `WITH_BROWSER=1 scripts/setup.sh`); CHROMIUM overrides. */
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

export const SCREENSHOT_DIR = fileURLToPath(new URL('../../test-output/screenshots/', import.meta.url));

export interface TestBrowser {
  browser: Browser;
  close(): Promise<void>;
}

/** Headless Chromium; Playwright gives every launch a fresh, temporary profile. */
export async function launchBrowser(): Promise<TestBrowser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return {
    browser,
    async close() {
      await browser.close();
    },
  };
}

export interface PageWatch {
  /** Requests (and WebSockets) to any host but the farm server. */
  foreign: string[];
  /** Console errors and uncaught exceptions not marked as expected. */
  errors: string[];
  /** Marks console errors matching `pattern` as expected (e.g. a 401 the test provokes). */
  expect(pattern: RegExp): void;
}

/** Records what a page fetches and logs, so a test can assert it stays local and quiet. */
export function watchPage(page: Page, serverHost: string): PageWatch {
  const expected: RegExp[] = [];
  const watch: PageWatch = { foreign: [], errors: [], expect: (pattern) => expected.push(pattern) };
  const isLocal = (url: string) => {
    if (url.startsWith('data:') || url.startsWith('blob:') || url === 'about:blank') return true;
    try {
      return new URL(url).hostname === serverHost;
    } catch {
      return false;
    }
  };
  page.on('request', (request) => {
    if (!isLocal(request.url())) watch.foreign.push(request.url());
  });
  page.on('websocket', (socket) => {
    if (!isLocal(socket.url())) watch.foreign.push(socket.url());
  });
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const text = `${message.text()} (${message.location().url})`;
    if (!expected.some((pattern) => pattern.test(text))) watch.errors.push(text);
  });
  page.on('pageerror', (error) => watch.errors.push(`uncaught: ${error.message}`));
  return watch;
}

export async function screenshot(page: Page, name: string, fullPage = true): Promise<string> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  // A full-page capture of a scrolled page would show the sticky header mid-page.
  if (fullPage) await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: file, fullPage });
  return file;
}

/**
 * Stops the farm's server and starts it again on the same ports with the same data: what
 * the web page sees when the server is restarted. The returned function brings it back.
 */
export async function stopServer(farm: TestFarm, overrides: Partial<ServerSettings> = {}): Promise<() => Promise<void>> {
  const { httpPort, wsPort } = farm.server;
  await farm.server.close();
  return async () => {
    const settings = {
      ...serverSchema.parse({}),
      bind: '127.0.0.1',
      port: wsPort,
      web_port: httpPort,
      data_dir: path.join(farm.root, 'server'),
      log_level: 'silent',
      ...overrides,
    } as ServerSettings;
    const log = process.env.ARCHENLAND_TEST_LOGS ? createLogger('server', 'debug') : silentLogger;
    const server = await startServer(settings, log);
    farm.server = server;
    // The farm's own close() knows only the first server, which is closed already.
    farm.close = async () => {
      await Promise.all(farm.workers.map((w) => w.shutdown()));
      await server.close();
    };
  };
}
