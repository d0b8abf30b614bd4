/**
 * The page side of the UI-load benchmark (bench/ui-load.ts): the script injected into the
 * job page to measure it, opening the page in a fresh browser context, and reading what
 * the page measured over a window of time.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { sleep, type BenchContext } from './harness.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
/** The selector of a rendered tile of the frame grid. */
export const GRID_CELL = '.grid-scroller .cell';
/** The path of the job page's frame list (`GET /api/jobs/:id/frames`, columns); `?since=` asks only for changed frames. */
const FRAMES_PATH = /\/api\/jobs\/[^/]+\/frames$/;

/** What the injected script keeps in `window.__bench`. */
interface PageProbe {
  /** [startTime, duration] of each long task (> 50 ms). */
  longTasks: Array<[number, number]>;
  frames: number;
  /** Animation frames that came more than 50 ms after the previous one. */
  slowFrames: number;
  maxGap: number;
  lastFrame: number;
  /** performance.now() when the app's <main> and the first grid tile appeared, and the next animation frame after it. */
  shell: number | null;
  /** The page's live WebSocket opened, and its first message (`welcome`) arrived. */
  wsOpen: number | null;
  welcome: number | null;
  firstCell: number | null;
  firstPaint: number | null;
  /** Each frame-list body read with Response.json(): when it was asked for, had arrived, was parsed. */
  json: Array<{ url: string; start: number; bodyAt: number; parsedAt: number; chars: number }>;
}

/** Runs in the page before its own scripts (serialised by Playwright: no outside references). */
function probeScript(cellSelector: string, framesPath: string): void {
  const b: PageProbe = { longTasks: [], frames: 0, slowFrames: 0, maxGap: 0, lastFrame: 0, shell: null, wsOpen: null, welcome: null, firstCell: null, firstPaint: null, json: [] };
  (window as unknown as { __bench: PageProbe }).__bench = b;
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) b.longTasks.push([e.startTime, e.duration]);
    }).observe({ type: 'longtask', buffered: true });
  } catch {
    // no long task API: the figures stay empty
  }
  const tick = (t: number) => {
    if (b.lastFrame) {
      const gap = t - b.lastFrame;
      if (gap > 50) b.slowFrames++;
      if (gap > b.maxGap) b.maxGap = gap;
    }
    b.lastFrame = t;
    b.frames++;
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  const observer = new MutationObserver(() => {
    if (b.shell === null && document.querySelector('main#main')) b.shell = performance.now();
    if (b.firstCell === null && document.querySelector(cellSelector)) {
      b.firstCell = performance.now();
      observer.disconnect();
      requestAnimationFrame(() => (b.firstPaint = performance.now()));
    }
  });
  observer.observe(document, { childList: true, subtree: true });
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      this.addEventListener('open', () => (b.wsOpen ??= performance.now()));
      this.addEventListener('message', () => (b.welcome ??= performance.now()));
    }
  };
  const json = Response.prototype.json;
  Response.prototype.json = async function (this: Response) {
    if (!new RegExp(framesPath).test(new URL(this.url).pathname)) return json.call(this);
    const start = performance.now();
    const text = await this.text();
    const bodyAt = performance.now();
    const value = JSON.parse(text);
    b.json.push({ url: this.url, start, bodyAt, parsedAt: performance.now(), chars: text.length });
    return value;
  };
}

interface WsFrame {
  at: number;
  bytes: number;
  changes: Record<string, number>;
}

export interface Load {
  /** All ms since navigation start, in the page. */
  firstPaint: number;
  firstCell: number;
  shell: number;
  htmlFirstByte: number;
  /** The app's script (web/dist/assets/index-*.js) fully received. */
  scriptEnd: number;
  domContentLoaded: number;
  wsOpen: number;
  /** The first GET /api/jobs/:id/frames: started, first byte, last byte; bytes on the wire. */
  detailStart: number;
  detailRequestStart: number;
  detailFirstByte: number;
  detailEnd: number;
  detailBytes: number;
  parse: number;
  parsedAt: number;
  /** Node's view: page.goto() called → first paint seen (includes CDP round trips). */
  wall: number;
  welcome: number;
  longTasks: Array<[number, number]>;
  /** Frame-list requests by the time the live connection listened: whole lists, and only the frames changed since (the catch-up). */
  detailRequests: number;
  catchUps: number;
  cells: number;
}

export interface Opened {
  context: BrowserContext;
  page: Page;
  ws: WsFrame[];
  requests: string[];
  load: Load;
}

/** Opens the job page in a fresh context and waits for the grid's first render. */
export async function openJobPage(browser: Browser, httpUrl: string, jobId: string): Promise<Opened> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  // As a string: tsx (esbuild, keepNames) wraps named functions in `__name(…)`, which the page lacks.
  await context.addInitScript(`globalThis.__name ??= (f) => f; (${probeScript.toString()})(${JSON.stringify(GRID_CELL)}, ${JSON.stringify(FRAMES_PATH.source)});`);
  const page = await context.newPage();
  const ws: WsFrame[] = [];
  const requests: string[] = [];
  page.on('request', (request) => requests.push(request.url()));
  page.on('websocket', (socket) => {
    socket.on('framereceived', ({ payload }) => {
      const text = typeof payload === 'string' ? payload : payload.toString('utf8');
      const changes: Record<string, number> = {};
      try {
        const message = JSON.parse(text) as { type: string; changes?: Array<{ type: string }> };
        if (message.type !== 'batch') changes[message.type] = 1;
        for (const change of message.changes ?? []) changes[change.type] = (changes[change.type] ?? 0) + 1;
      } catch {
        changes.invalid = 1;
      }
      ws.push({ at: performance.now(), bytes: Buffer.byteLength(text), changes });
    });
  });
  const started = performance.now();
  await page.goto(`${httpUrl}/#/jobs/${jobId}`, { waitUntil: 'commit' });
  const problems: string[] = [];
  page.on('console', (message) => message.type() === 'error' || message.type() === 'warning' ? problems.push(message.text().slice(0, 300)) : undefined);
  page.on('pageerror', (error) => problems.push(`uncaught: ${error.message}`));
  try {
    await page.waitForFunction(() => (window as unknown as { __bench: PageProbe }).__bench.firstPaint !== null, null, { timeout: 120_000, polling: 50 });
  } catch (error) {
    // Say what the page shows instead of the grid (an error, a protocol mismatch, a login form…).
    const shown = await page.evaluate(() => document.querySelector('main')?.textContent ?? document.body.textContent ?? '').catch(() => '');
    throw new Error(`the job page did not render its frame grid: ${(error as Error).message.split('\n')[0]}; the page shows: "${shown.replace(/\s+/g, ' ').trim().slice(0, 300)}"; console: ${problems.slice(0, 3).join(' | ') || 'nothing'}`);
  }
  const wall = performance.now() - started;
  // The grid may show before the live connection listens; wait for it (and the catch-up it
  // brings) so the table says when it came.
  await page
    .waitForFunction((framesPath) => {
      const b = (window as unknown as { __bench: PageProbe }).__bench;
      const resources = (performance as unknown as { getEntriesByType(t: string): PerformanceResourceTiming[] }).getEntriesByType('resource');
      return b.welcome !== null && resources.some((r) => new RegExp(framesPath).test(new URL(r.name).pathname) && r.name.includes('since='));
    }, FRAMES_PATH.source, { timeout: 10_000, polling: 50 })
    .catch(() => undefined);
  const measured = await page.evaluate(([selector, framesPath]) => {
    const b = (window as unknown as { __bench: PageProbe }).__bench;
    // (Typed by hand: the global `performance` type here is Node's, the code runs in the page.)
    const entries = (type: string) => (performance as unknown as { getEntriesByType(t: string): unknown[] }).getEntriesByType(type);
    const nav = entries('navigation')[0] as PerformanceNavigationTiming | undefined;
    const script = (entries('resource') as PerformanceResourceTiming[]).find((r) => /\/assets\/[^/]+\.js$/.test(r.name));
    const frameLists = (entries('resource') as PerformanceResourceTiming[]).filter((r) => new RegExp(framesPath).test(new URL(r.name).pathname));
    const details = frameLists.filter((r) => !new URL(r.name).search.includes('since='));
    const first = details[0];
    return {
      firstPaint: b.firstPaint!,
      firstCell: b.firstCell!,
      shell: b.shell ?? Number.NaN,
      wsOpen: b.wsOpen ?? Number.NaN,
      welcome: b.welcome ?? Number.NaN,
      htmlFirstByte: nav?.responseStart ?? Number.NaN,
      scriptEnd: script?.responseEnd ?? Number.NaN,
      domContentLoaded: nav?.domContentLoadedEventEnd ?? Number.NaN,
      detailStart: first?.startTime ?? Number.NaN,
      detailRequestStart: first?.requestStart ?? Number.NaN,
      detailFirstByte: first?.responseStart ?? Number.NaN,
      detailEnd: first?.responseEnd ?? Number.NaN,
      detailBytes: first?.encodedBodySize ?? Number.NaN,
      parse: b.json[0] ? b.json[0].parsedAt - b.json[0].bodyAt : Number.NaN,
      parsedAt: b.json[0]?.parsedAt ?? Number.NaN,
      longTasks: b.longTasks.filter(([start]) => start <= b.firstPaint!),
      detailRequests: details.length,
      catchUps: frameLists.length - details.length,
      cells: document.querySelectorAll(selector).length,
    };
  }, [GRID_CELL, FRAMES_PATH.source] as const);
  return { context, page, ws, requests, load: { ...measured, wall } };
}

export interface WindowStats {
  seconds: number;
  messages: number;
  bytes: number;
  changes: Record<string, number>;
  longTasks: number;
  longTaskMs: number;
  longestTask: number;
  frames: number;
  slowFrames: number;
  maxGap: number;
  detailReloads: number;
  previews: number;
  cells: number;
  /** Done frames shown by the page (grid legend) and known to the server, at the end. */
  pageDone: number;
  serverDone: number;
  throughput: number;
}

type Counters = { frames: number; slowFrames: number; maxGap: number; longTasks: number; now: number; cells: number; legendDone: number };

async function counters(page: Page): Promise<Counters> {
  return page.evaluate((selector) => {
    const b = (window as unknown as { __bench: PageProbe }).__bench;
    const legend = document.querySelector('.legend [data-state="done"]')?.textContent ?? '';
    return {
      frames: b.frames,
      slowFrames: b.slowFrames,
      maxGap: b.maxGap,
      longTasks: b.longTasks.length,
      now: performance.now(),
      cells: document.querySelectorAll(selector).length,
      legendDone: Number(legend.replace(/[^0-9]/g, '')),
    };
  }, GRID_CELL);
}

/** Watches the open page for `seconds`; `during` runs meanwhile (e.g. scrolling). */
export async function watchWindow(opened: Opened, seconds: number, serverDone: () => Promise<number>, during?: (until: number) => Promise<void>): Promise<WindowStats> {
  const { page, ws, requests } = opened;
  // The rAF gap record is reset so the window's own worst gap is seen.
  await page.evaluate(() => ((window as unknown as { __bench: PageProbe }).__bench.maxGap = 0));
  const before = await counters(page);
  const doneBefore = await serverDone();
  const wsFrom = ws.length;
  const requestsFrom = requests.length;
  const start = performance.now();
  const until = start + seconds * 1000;
  if (during) await during(until);
  const left = until - performance.now();
  if (left > 0) await sleep(left);
  const elapsed = (performance.now() - start) / 1000;
  const after = await counters(page);
  const doneAfter = await serverDone();
  const tasks = await page.evaluate(
    ([from, to]) => (window as unknown as { __bench: PageProbe }).__bench.longTasks.filter(([s]) => s >= from && s <= to),
    [before.now, after.now] as [number, number],
  );
  const frames = ws.slice(wsFrom).filter((f) => f.at >= start && f.at <= start + elapsed * 1000);
  const changes: Record<string, number> = {};
  for (const f of frames) for (const [k, n] of Object.entries(f.changes)) changes[k] = (changes[k] ?? 0) + n;
  const newRequests = requests.slice(requestsFrom);
  return {
    seconds: elapsed,
    messages: frames.length,
    bytes: frames.reduce((a, f) => a + f.bytes, 0),
    changes,
    longTasks: tasks.length,
    longTaskMs: tasks.reduce((a, [, d]) => a + d, 0),
    longestTask: tasks.reduce((a, [, d]) => Math.max(a, d), 0),
    frames: after.frames - before.frames,
    slowFrames: after.slowFrames - before.slowFrames,
    maxGap: after.maxGap,
    detailReloads: newRequests.filter((u) => FRAMES_PATH.test(new URL(u).pathname)).length,
    previews: newRequests.filter((u) => u.includes('/preview')).length,
    cells: after.cells,
    pageDone: after.legendDone,
    serverDone: doneAfter,
    throughput: (doneAfter - doneBefore) / elapsed,
  };
}

/** Rebuilds web/dist when it is missing or older than its sources, as scripts/setup.sh does. */
export function ensureWebBuild(ctx: BenchContext): string {
  const index = path.join(ROOT, 'web/dist/index.html');
  let built = 0;
  try {
    built = statSync(index).mtimeMs;
  } catch {
    // missing
  }
  const newer = (p: string): boolean => {
    const full = path.join(ROOT, p);
    let s;
    try {
      s = statSync(full);
    } catch {
      return false;
    }
    if (s.mtimeMs > built) return true;
    return s.isDirectory() && readdirSync(full).some((name) => newer(path.join(p, name)));
  };
  const stale = built === 0 || ['web/src', 'web/public', 'web/index.html', 'web/vite.config.ts', 'src/protocol', 'package-lock.json'].some(newer);
  if (!stale) return 'web/dist up to date';
  ctx.log('web/dist is missing or older than its sources: npm run build:web');
  execFileSync('npm', ['run', '--silent', 'build:web'], { cwd: ROOT, stdio: 'inherit' });
  return 'web/dist rebuilt by the benchmark (it was older than its sources)';
}

/**
 * Opens the workers page in a fresh context: ms from navigation start until its first
 * worker row shows, and until all `expected` rows do (the page's own clock).
 */
export async function openWorkersPage(browser: Browser, httpUrl: string, expected: number): Promise<{ firstRow: number; allRows: number }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  try {
    const page = await context.newPage();
    await page.goto(`${httpUrl}/#/workers`, { waitUntil: 'commit' });
    const rows = (count: number) =>
      page
        .waitForFunction((n) => (document.querySelectorAll('.worker-list .worker-row[data-worker]').length >= n ? performance.now() : null), count, { timeout: 120_000, polling: 'raf' })
        .then((handle) => handle.jsonValue() as Promise<number>);
    const firstRow = await rows(1);
    const allRows = await rows(expected);
    return { firstRow, allRows };
  } finally {
    await context.close();
  }
}
