/**
 * The web UI under load: the job page of a 100,000-frame job while many simulated workers
 * render it, in a real headless Chromium (playwright-core, Debian's `chromium`).
 *
 * A real server runs in a child process (bench/lib/server-process.ts) and serves the built
 * UI (web/dist, rebuilt first when older than its sources, as scripts/setup.sh does). 200
 * simulated workers (testkit/sim-worker.ts) render the job with short frames and send
 * `progress` as the real worker does. Then:
 *
 * 1. Page loads: a fresh browser context (cold cache) opens `/#/jobs/:id` directly, several
 *    times; time to first render is navigation start → the first tile of the frame grid
 *    (`.grid-scroller .cell`, web/src/components/frame-grid.tsx) in the DOM and the next
 *    animation frame, measured in the page. The load is broken down with Resource Timing
 *    and a wrapper around `Response.prototype.json` (download vs JSON.parse vs the rest)
 *    of the page's first request for the job's frames, `GET /api/jobs/:id/frames`.
 * 2. Live updates: on the last page, for a window of seconds, the WebSocket messages and
 *    bytes the page receives (CDP `framereceived`), long tasks (PerformanceObserver
 *    'longtask') and animation frames (a requestAnimationFrame counter), first with the page
 *    left alone, then while the grid is scrolled with the mouse wheel.
 *
 * Everything the page measures is injected with `addInitScript`; web/ is not changed.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import type { FrameColumns, Job } from '../src/protocol/index.ts';
import { apiHeaders, fakeBlend, getJson, postJson, submitJob } from '../testkit/api.ts';
import { fakeScene, frameFromBuffer, SimulatedWorkers, TINY_PNG } from '../testkit/sim-worker.ts';
import {
  fmtInt,
  fmtMB,
  fmtMs,
  fmtS,
  mdTable,
  median,
  quantile,
  sleep,
  waitFor,
  type BenchContext,
  type BenchResult,
  type Benchmark,
} from './lib/harness.ts';
import { option } from './lib/options.ts';
import { ServerProcess } from './lib/server-process.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
/** The selector of a rendered tile of the frame grid. */
const GRID_CELL = '.grid-scroller .cell';
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

interface Load {
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

interface Opened {
  context: BrowserContext;
  page: Page;
  ws: WsFrame[];
  requests: string[];
  load: Load;
}

/** Opens the job page in a fresh context and waits for the grid's first render. */
async function openJobPage(browser: Browser, httpUrl: string, jobId: string): Promise<Opened> {
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

interface WindowStats {
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
async function watchWindow(opened: Opened, seconds: number, serverDone: () => Promise<number>, during?: (until: number) => Promise<void>): Promise<WindowStats> {
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
function ensureWebBuild(ctx: BenchContext): string {
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

export const uiLoad: Benchmark = {
  name: 'ui-load',
  title: 'Web UI under load: a 100,000-frame job page',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const frames = option(ctx, 'frames', { default: 100_000, quick: 10_000, min: 1, integer: true });
    const workers = option(ctx, 'workers', { default: 200, quick: 100, min: 1, integer: true });
    const meanMs = option(ctx, 'frame-ms', { default: 2000, min: 0 });
    const jitter = option(ctx, 'jitter', { default: 0.5, min: 0, max: 1 });
    const progressMs = option(ctx, 'progress-ms', { default: 250, min: 0 });
    const loads = option(ctx, 'loads', { default: 5, quick: 3, min: 1, integer: true });
    const windowS = option(ctx, 'window-s', { default: 30, quick: 15, min: 0 });
    const scrollS = option(ctx, 'scroll-s', { default: 10, quick: 5, min: 0 });
    const ttfrTarget = option(ctx, 'target-ms', { default: 2000, min: 0 });
    const profile = option(ctx, 'profile', { default: '' });
    const profileDir = profile ? path.resolve(profile) : undefined;
    const logs = option(ctx, 'server-logs', { default: false });

    if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: install it with \`WITH_BROWSER=1 bash scripts/setup.sh\` or point CHROMIUM at one`);
    const build = ensureWebBuild(ctx);
    const server = await ServerProcess.start({}, { profileDir, logs });
    let sims: SimulatedWorkers | undefined;
    let browser: Browser | undefined;
    let jobId: string | undefined;
    try {
      ctx.log(`connecting ${workers} simulated workers`);
      sims = await SimulatedWorkers.start({
        wsUrl: server.wsUrl,
        httpUrl: server.httpUrl,
        token: server.workerToken,
        count: workers,
        renderMs: () => meanMs * (1 - jitter + 2 * jitter * Math.random()),
        scene: () => fakeScene(1, frames),
        frame: frameFromBuffer(TINY_PNG),
        progressMs,
      });
      ctx.log(`submitting a job of ${fmtInt(frames)} frames`);
      const submitted = performance.now();
      const job = await submitJob(server.httpUrl, server.token, fakeBlend());
      jobId = job.id;
      await server.waitForJob(job.id, ['rendering'], 120_000);
      const queuedMs = performance.now() - submitted;
      const serverDone = async () => (await getJson<Job[]>(server.httpUrl, server.token, '/api/jobs')).find((j) => j.id === job.id)?.counts.done ?? 0;
      // Let every worker get going before the page opens.
      await waitFor('every worker rendering', async () => (await serverDone()) >= workers, 120_000, 250);
      await sleep(2000);

      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      });
      const chromeVersion = browser.version();

      // ---- 1. page loads ----
      ctx.log(`${loads} cold loads of the job page`);
      await server.stats({ resetLoop: true });
      const opened: Opened[] = [];
      for (let i = 0; i < loads; i++) {
        const o = await openJobPage(browser, server.httpUrl, job.id);
        ctx.log(`  load ${i + 1}: first render ${fmtMs(o.load.firstPaint)} (GET /api/jobs/:id/frames ${fmtMB(o.load.detailBytes)}, first byte at ${fmtMs(o.load.detailFirstByte)}, last at ${fmtMs(o.load.detailEnd)})`);
        opened.push(o);
        if (i < loads - 1) {
          await o.context.close();
          await sleep(1000);
        }
      }
      const loadStats = await server.stats({ resetLoop: true });
      const page = opened[opened.length - 1]!;
      const loadsOnly = opened.map((o) => o.load);

      // ---- 2. live updates, page left alone ----
      ctx.log(`watching the page for ${windowS} s of live updates`);
      await sleep(1000);
      const cpuBefore = await server.stats({ resetLoop: true });
      const idle = await watchWindow(page, windowS, serverDone);
      const cpuAfter = await server.stats({ resetLoop: true });

      // ---- 3. live updates while scrolling the grid ----
      ctx.log(`scrolling the grid for ${scrollS} s`);
      const box = await page.page.locator('.grid-scroller').boundingBox();
      const scrolling = await watchWindow(page, scrollS, serverDone, async (until) => {
        if (!box) return;
        await page.page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
        let direction = 1;
        let steps = 0;
        while (performance.now() < until) {
          await page.page.mouse.wheel(0, direction * 400);
          if (++steps % 40 === 0) direction = -direction;
          await sleep(50);
        }
      });
      await page.context.close();

      // ---- the job page's initial load, from Node; and the API's frameList beside it ----
      const { firstByte, fetchMs, body, encoding } = await timedGet(server.httpUrl, server.token, `/api/jobs/${job.id}/frames`);
      const gzipped = gzipSync(body, { level: 6 }).length;
      const columns = JSON.parse(body.toString('utf8')) as Pick<FrameColumns, 'runs'>;
      const frameCount = columns.runs.reduce((sum, [, count]) => sum + count, 0);
      const frameList = await timedGet(server.httpUrl, server.token, `/api/jobs/${job.id}`);

      // ---- figures ----
      const m = (pick: (l: Load) => number) => median(loadsOnly.map(pick));
      const ttfr = m((l) => l.firstPaint);
      const rate = idle.messages / idle.seconds;
      const bytesRate = idle.bytes / idle.seconds;
      const loadLongest = loadsOnly.map((l) => l.longTasks.reduce((a, [, d]) => Math.max(a, d), 0));
      const lag = idle.serverDone - idle.pageDone;
      const sized = `${fmtInt(frames)} frames, ${workers} workers rendering`;
      const parts = {
        before: m((l) => l.detailStart),
        server: m((l) => l.detailFirstByte - l.detailRequestStart),
        download: m((l) => l.detailEnd - l.detailFirstByte),
        parse: m((l) => l.parse),
        after: m((l) => l.firstCell - l.parsedAt),
      };
      const rows = [
        {
          figure: `time to first render of the job page (navigation → grid tiles painted; ${sized}; median of ${loads} cold loads)`,
          value: `${fmtS(ttfr)} (min ${fmtS(Math.min(...loadsOnly.map((l) => l.firstPaint)))}, max ${fmtS(Math.max(...loadsOnly.map((l) => l.firstPaint)))})`,
          target: `< ${fmtS(ttfrTarget)}`,
          pass: ttfr < ttfrTarget,
        },
        {
          figure: 'where that time goes (medians): before the detail is asked for · server to 1st byte · download · JSON.parse · parsed → grid',
          value: `${fmtS(parts.before)} · ${fmtS(parts.server)} · ${fmtS(parts.download)} · ${fmtS(parts.parse)} · ${fmtS(parts.after)}`,
        },
        {
          figure: 'job page initial load: GET /api/jobs/:id/frames',
          value: `${fmtMB(body.length)} (${fmtInt(frameCount)} frames, ${(body.length / frameCount).toFixed(0)} B/frame; gzip would be ${fmtKB(gzipped)}; served with content-encoding: ${encoding})`,
        },
        {
          figure: `WebSocket messages to the page while rendering (${windowS} s window)`,
          value: `${rate.toFixed(1)} messages/s, ${(bytesRate / 1024).toFixed(1)} KiB/s (${(idle.bytes / Math.max(1, idle.messages) / 1024).toFixed(1)} KiB per message)`,
          target: '≤ 10 messages/s',
          pass: rate <= 10 && idle.messages > 0,
        },
        {
          figure: 'long tasks (> 50 ms) on the page while updates arrive: idle / scrolling',
          value: `${(idle.longTasks / idle.seconds).toFixed(2)}/s, ${fmtPct1(idle.longTaskMs / (idle.seconds * 1000))} of the time, longest ${fmtMs(idle.longestTask)} / ${(scrolling.longTasks / scrolling.seconds).toFixed(2)}/s, ${fmtPct1(scrolling.longTaskMs / (scrolling.seconds * 1000))}, longest ${fmtMs(scrolling.longestTask)}`,
        },
        {
          figure: 'animation frames while updates arrive: idle / scrolling',
          value: `${(idle.frames / idle.seconds).toFixed(0)} / ${(scrolling.frames / scrolling.seconds).toFixed(0)} fps; gaps > 50 ms: ${idle.slowFrames} / ${scrolling.slowFrames}; worst ${fmtMs(idle.maxGap)} / ${fmtMs(scrolling.maxGap)}`,
        },
        {
          figure: 'longest task during a page load (median of loads)',
          value: fmtMs(median(loadLongest)),
        },
        {
          figure: 'server event-loop delay while pages load / while one page watches (max)',
          value: `${fmtMs(loadStats.loop.max)} / ${fmtMs(cpuAfter.loop.max)} (p99 ${fmtMs(loadStats.loop.p99)} / ${fmtMs(cpuAfter.loop.p99)})`,
        },
      ];

      const loadRows = loadsOnly.map((l, i) => [
        i + 1,
        fmtMs(l.htmlFirstByte),
        fmtMs(l.scriptEnd),
        fmtMs(l.domContentLoaded),
        fmtMs(l.wsOpen),
        fmtMs(l.welcome),
        fmtMs(l.detailStart),
        fmtMs(l.detailFirstByte - l.detailRequestStart),
        fmtMs(l.detailEnd - l.detailFirstByte),
        fmtMs(l.parse),
        fmtMs(l.firstCell - l.parsedAt),
        fmtMs(l.firstCell),
        fmtMs(l.firstPaint),
        fmtMs(l.wall),
        `${l.detailRequests} + ${l.catchUps}`,
        `${l.longTasks.length}, longest ${fmtMs(l.longTasks.reduce((a, [, d]) => Math.max(a, d), 0))}`,
      ]);
      const changeList = (w: WindowStats) =>
        Object.entries(w.changes)
          .sort((a, b) => b[1] - a[1])
          .map(([k, n]) => `${k} ${(n / w.seconds).toFixed(0)}/s`)
          .join(', ');
      const cpuMs = (cpuAfter.cpu.user + cpuAfter.cpu.system - cpuBefore.cpu.user - cpuBefore.cpu.system) / 1000;

      const details = [
        `One job of ${fmtInt(frames)} frames rendered by ${workers} simulated workers (real WebSocket clients and uploads; frames of`,
        `${(meanMs * (1 - jitter)).toFixed(0)}–${(meanMs * (1 + jitter)).toFixed(0)} ms, \`progress\` every ${progressMs} ms) against a real server in a child process, and the job page`,
        `(\`/#/jobs/:id\`) in headless ${chromeVersion} (playwright-core, 1280×860, software rendering). The server, the simulated`,
        'workers and Chromium share the 2 cores: page timings include that contention. The page is measured by a script',
        'injected with `addInitScript` (web/ is unchanged): a MutationObserver for the first grid tile, a requestAnimationFrame',
        'counter, a PerformanceObserver for long tasks, and a wrapper around `Response.prototype.json` that times `JSON.parse`',
        'of the job\'s frame list separately. WebSocket traffic is counted from Chromium\'s own `framereceived` events.',
        `UI build: ${build}. The job was queued ${fmtS(queuedMs)} after the submit (simulated probe, ${fmtInt(frames)} frame rows).`,
        '',
        `**Time to first render**: navigation start → the first \`${GRID_CELL}\` in the DOM → the next animation frame`,
        `(≈ painted). Each load uses a fresh browser context (no cache). Times in ms from navigation start, per load:`,
        '',
        mdTable(
          ['load', 'HTML 1st byte', 'script received', 'DOMContentLoaded', 'WebSocket open', '`welcome`', 'GET job frames sent', '… server (to 1st byte)', '… download', 'JSON.parse', 'parsed → grid in DOM', 'grid in DOM', 'painted', 'seen by Node', 'frame lists (whole + changed since)', 'long tasks (count, longest)'],
          loadRows,
        ),
        '',
        `Median breakdown: ${fmtMs(parts.before)} before the job's frames are even requested (the HTML and the script arrive`,
        `(DOMContentLoaded ${fmtMs(m((l) => l.domContentLoaded))}); index.html asks for the frames before the app's script arrives, and the app then checks`,
        `the session, asks /api/info, opens the WebSocket (open ${fmtMs(m((l) => l.wsOpen))}, \`welcome\` ${fmtMs(m((l) => l.welcome))}) and fetches only the frames changed since),`,
        `${fmtMs(parts.server)} for the server to start answering, ${fmtMs(parts.download)} to receive ${fmtMB(median(loadsOnly.map((l) => l.detailBytes)))},`,
        `${fmtMs(parts.parse)} of JSON.parse, and ${fmtMs(parts.after)} from parsed to the grid in the DOM (schema validation of the`,
        'columns, decoding them into frames, the frame index, the per-state counts and the first render).',
        `From Node, GET /api/jobs/:id/frames took ${fmtMs(firstByte)} to the first byte and ${fmtMs(fetchMs)} in all for ${fmtMB(body.length)}`,
        `(${fmtInt(frameCount)} frames; gzip level 6 would make it ${fmtKB(gzipped)}); GET /api/jobs/:id (the API's \`frameList\`, one object per frame)`,
        `took ${fmtMs(frameList.firstByte)} to the first byte and ${fmtMs(frameList.fetchMs)} in all for ${fmtMB(frameList.body.length)}.`,
        `Server event-loop delay during the page loads: p99 ${fmtMs(loadStats.loop.p99)}, max ${fmtMs(loadStats.loop.max)}.`,
        '',
        `**Live updates** (the last loaded page, left alone for ${idle.seconds.toFixed(0)} s, then scrolled with the mouse wheel for ${scrolling.seconds.toFixed(0)} s):`,
        '',
        mdTable(
          ['figure', 'left alone', 'scrolling'],
          [
            ['WebSocket messages/s (bytes/s)', `${(idle.messages / idle.seconds).toFixed(1)} (${fmtInt(idle.bytes / idle.seconds)} B/s)`, `${(scrolling.messages / scrolling.seconds).toFixed(1)} (${fmtInt(scrolling.bytes / scrolling.seconds)} B/s)`],
            ['changes received, per second by kind', changeList(idle), changeList(scrolling)],
            ['long tasks: count, share of time, longest', `${idle.longTasks}, ${fmtPct1(idle.longTaskMs / (idle.seconds * 1000))}, ${fmtMs(idle.longestTask)}`, `${scrolling.longTasks}, ${fmtPct1(scrolling.longTaskMs / (scrolling.seconds * 1000))}, ${fmtMs(scrolling.longestTask)}`],
            ['animation frames/s; gaps > 50 ms; worst gap', `${(idle.frames / idle.seconds).toFixed(0)}; ${idle.slowFrames}; ${fmtMs(idle.maxGap)}`, `${(scrolling.frames / scrolling.seconds).toFixed(0)}; ${scrolling.slowFrames}; ${fmtMs(scrolling.maxGap)}`],
            ['grid tiles in the DOM (of all frames)', `${idle.cells} of ${fmtInt(frames)}`, `${scrolling.cells} of ${fmtInt(frames)}`],
            ['job frames fetched again (GET /api/jobs/:id/frames, whole or changed since)', String(idle.detailReloads), String(scrolling.detailReloads)],
            ['thumbnail requests', String(idle.previews), String(scrolling.previews)],
            ['frames done per second (server)', idle.throughput.toFixed(0), scrolling.throughput.toFixed(0)],
          ],
        ),
        '',
        `At the end of the first window the page's grid counted ${fmtInt(idle.pageDone)} frames done and the server ${fmtInt(idle.serverDone)}`,
        `(${lag >= 0 ? `${fmtInt(lag)} behind` : `${fmtInt(-lag)} ahead`}, ≈ ${(Math.max(0, lag) / Math.max(1, idle.throughput)).toFixed(1)} s of rendering, read a moment apart).`,
        `Server CPU during that window: ${(cpuMs / (idle.seconds * 1000)).toFixed(2)} cores; event-loop delay p99 ${fmtMs(cpuAfter.loop.p99)}, max ${fmtMs(cpuAfter.loop.max)}.`,
        `Long tasks over all cold loads: ${loadsOnly.map((l) => l.longTasks.map(([, d]) => d.toFixed(0)).join('+') || '0').join(' | ')} ms; p90 of all load long tasks ${fmtMs(quantile(loadsOnly.flatMap((l) => l.longTasks.map(([, d]) => d)), 0.9))}.`,
      ].join('\n');
      return { rows, details };
    } finally {
      await browser?.close().catch(() => undefined);
      if (jobId) await postJson(server.httpUrl, server.token, `/api/jobs/${jobId}/cancel`).catch(() => undefined);
      await sims?.close();
      await server.stop();
      if (profileDir) ctx.log(`server CPU profile written to ${profileDir}`);
    }
  },
};

/** GET `pathName` from Node: ms to the first byte and in all, the body, and its content encoding. */
async function timedGet(httpUrl: string, token: string, pathName: string) {
  const start = performance.now();
  const response = await fetch(`${httpUrl}${pathName}`, { headers: apiHeaders(token) });
  const firstByte = performance.now() - start;
  const body = Buffer.from(await response.arrayBuffer());
  return { firstByte, fetchMs: performance.now() - start, body, encoding: response.headers.get('content-encoding') ?? 'none' };
}

const fmtKB = (bytes: number) => (bytes >= 1024 * 1024 ? fmtMB(bytes) : `${(bytes / 1024).toFixed(0)} KiB`);
const fmtPct1 = (fraction: number) => `${(fraction * 100).toFixed(1)} %`;
