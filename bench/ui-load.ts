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
import { existsSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { gzipSync } from 'node:zlib';
import { chromium, type Browser } from 'playwright-core';
import type { FrameColumns, Job } from '../src/protocol/index.ts';
import { apiPath } from '../src/protocol/index.ts';
import { apiHeaders, fakeBlend, getJson, postJson, submitJob } from '../testkit/api.ts';
import { fakeScene, frameFromBuffer, TINY_PNG } from '../testkit/fakes.ts';
import { SimulatedWorkers } from '../testkit/sim-worker.ts';
import {
  fmtInt,
  fmtMB,
  fmtMs,
  fmtS,
  fmtSpread,
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
import { CHROMIUM, ensureWebBuild, GRID_CELL, openJobPage, openWorkersPage, watchWindow, type Load, type Opened, type WindowStats } from './lib/ui-page.ts';

export const uiLoad: Benchmark = {
  name: 'ui-load',
  title: 'Web UI under load: a 100,000-frame job page',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const frames = option(ctx, 'frames', { default: 100_000, quick: 10_000, min: 1, integer: true });
    // The issue's farm: 2,000 workers on frames of 8 s (250 frames/s for the server).
    const workers = option(ctx, 'workers', { default: 2000, quick: 100, min: 1, integer: true });
    const meanMs = option(ctx, 'frame-ms', { default: 8000, quick: 2000, min: 0 });
    const jitter = option(ctx, 'jitter', { default: 0.5, min: 0, max: 1 });
    const progressMs = option(ctx, 'progress-ms', { default: 250, min: 0 });
    const loads = option(ctx, 'loads', { default: 5, quick: 3, min: 1, integer: true });
    const windowS = option(ctx, 'window-s', { default: 30, quick: 15, min: 0 });
    const scrollS = option(ctx, 'scroll-s', { default: 10, quick: 5, min: 0 });
    const ttfrTarget = option(ctx, 'target-ms', { default: 1000, min: 0 });
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
      const paceMs = (await server.metric('archenland_progress_interval_seconds')) * 1000;
      ctx.log(`submitting a job of ${fmtInt(frames)} frames`);
      const submitted = performance.now();
      const job = await submitJob(server.httpUrl, server.token, fakeBlend());
      jobId = job.id;
      await server.waitForJob(job.id, ['rendering'], 120_000);
      const queuedMs = performance.now() - submitted;
      const serverDone = async () => (await getJson<Job[]>(server.httpUrl, server.token, apiPath('listJobs'))).find((j) => j.id === job.id)?.counts.done ?? 0;
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

      ctx.log(`${loads} cold loads of the workers page (${workers} workers)`);
      const workersPage: Array<{ firstRow: number; allRows: number }> = [];
      for (let i = 0; i < loads; i++) workersPage.push(await openWorkersPage(browser, server.httpUrl, workers));
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
      const { firstByte, fetchMs, body, encoding } = await timedGet(server.httpUrl, server.token, apiPath('frameColumns', { id: job.id }));
      const gzipped = gzipSync(body, { level: 6 }).length;
      const columns = JSON.parse(body.toString('utf8')) as Pick<FrameColumns, 'runs'>;
      const frameCount = columns.runs.reduce((sum, [, count]) => sum + count, 0);
      const frameList = await timedGet(server.httpUrl, server.token, apiPath('getJob', { id: job.id }));

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
          figure: `workers page, ${fmtInt(workers)} workers: navigation → first row · all rows shown (median (min–max) of ${loads} cold loads)`,
          value: `${fmtSpread(workersPage.map((w) => w.firstRow), fmtS)} · ${fmtSpread(workersPage.map((w) => w.allRows), fmtS)}`,
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
        `${(meanMs * (1 - jitter)).toFixed(0)}–${(meanMs * (1 + jitter)).toFixed(0)} ms, \`progress\` every ${Math.max(progressMs, paceMs)} ms: the server's pace for ${fmtInt(workers)} workers) against a real server in a child process, and the job page`,
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
      if (jobId) await postJson(server.httpUrl, server.token, apiPath('cancelJob', { id: jobId })).catch(() => undefined);
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
