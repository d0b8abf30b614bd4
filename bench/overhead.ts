/**
 * Farm overhead on real Blender. The same frames of the same scene, rendered
 *   (a) by plain `blender -b scene.blend -o … -F PNG -s 1 -e N -a` (one process, Blender's own loop),
 *   (b) by one `blender -b scene.blend -o … -F PNG -f n` process per frame,
 *   (c) through Archenland: a real server and one real worker in this process,
 *       timed from the submit to the job completed (video included),
 * all with the same `-t` thread count, interleaved round by round so they share the
 * machine's noise. Reported: medians and the ratios (c)/(a) and (b)/(c).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, openAsBlob, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { BLENDER, makeTestScene } from '../testkit/scenes.ts';
import type { JobDetail } from '../src/protocol/index.ts';
import { apiPath } from '../src/protocol/index.ts';
import { getJson, submitJob } from '../testkit/api.ts';
import { fmtMs, fmtRatio, fmtS, fmtSpread, mdTable, median, type BenchContext, type BenchResult, type Benchmark } from './lib/harness.ts';
import { option } from './lib/options.ts';
import { RealFarm } from './lib/real-farm.ts';

const run = promisify(execFile);

interface FarmTimes {
  /** submit (request sent) → job completed: what a user waits for. */
  total: number;
  /** job queued (scene probed) → job completed: the farm without the probe. */
  queuedToCompleted: number;
  /** first frame handed out → last frame uploaded: rendering only. */
  firstToLast: number;
  probe: number;
  encode: number;
  /** Σ of the worker's per-frame render times (command sent to Blender → file saved). */
  renderSum: number;
  /** first assigned → first frame uploaded, less its render time: .blend download + Blender session start. */
  startup: number;
}

/** Σ of Blender's own per-frame " Time: mm:ss.xx (Saving: mm:ss.xx)" lines of an `-a` render, ms. */
function blenderFrameTimes(stdout: string): number {
  let total = 0;
  for (const m of stdout.matchAll(/^ Time: (\d+):(\d+\.\d+) \(Saving: (\d+):(\d+\.\d+)\)/gm)) {
    total += (Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4])) * 1000;
  }
  return total;
}

export const overhead: Benchmark = {
  name: 'overhead',
  title: 'Farm overhead on real Blender',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const frames = option(ctx, 'frames', { default: 20, quick: 10, min: 1, integer: true });
    const rounds = option(ctx, 'rounds', { default: 3, quick: 2, min: 1, integer: true });
    const threads = option(ctx, 'threads', { default: os.cpus().length, min: 1, integer: true });
    // 10 % of 1920×1080, 4 samples: tiny frames, so start-up and hand-off costs show.
    // A short job too: its fixed costs (probe, scene load, video) weigh most.
    const shortFrames = option(ctx, 'short-frames', { default: 4, min: 1, integer: true });
    const scene = await makeTestScene({ frames: `1-${frames}`, width: 192, height: 108, samples: 4 });
    const shortScene = await makeTestScene({ frames: `1-${shortFrames}`, width: 192, height: 108, samples: 4 });
    const work = mkdtempSync(path.join(os.tmpdir(), 'archenland-overhead-'));
    const farm = await RealFarm.start(threads);
    const times = { a: [] as number[], aFrames: [] as number[], b: [] as number[], c: [] as FarmTimes[], aShort: [] as number[], cShort: [] as FarmTimes[] };
    const blender = (blend: string, args: string[]) => run(BLENDER, ['-b', blend, '-Y', '-t', String(threads), ...args], { timeout: 600_000, maxBuffer: 64 * 1024 * 1024 });
    const countPngs = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.png')).length;

    /** (a): Blender's own loop over the scene's frames; its time, and Σ of its per-frame times. */
    const plainBlender = async (blend: string, count: number, dir: string) => {
      const start = performance.now();
      const { stdout } = await blender(blend, ['-o', path.join(dir, 'f_####'), '-F', 'PNG', '-s', '1', '-e', String(count), '-a']);
      const elapsed = performance.now() - start;
      if (countPngs(dir) !== count) throw new Error(`(a) wrote ${countPngs(dir)} of ${count} frames`);
      return { elapsed, frameTimes: blenderFrameTimes(stdout) };
    };

    /** (c): the scene submitted to the farm, timed from its own events. */
    const throughFarm = async (blend: string, count: number): Promise<FarmTimes> => {
      const start = performance.now();
      const job = await submitJob(farm.httpUrl, farm.token, await openAsBlob(blend));
      const t = farm.timeline(job.id);
      await farm.until(`job ${job.id} to end`, () => ['completed', 'failed', 'cancelled'].some((s) => t.states.has(s)), 600_000);
      const completed = t.states.get('completed');
      if (completed === undefined) throw new Error(`(c) job ended ${[...t.states.keys()].pop()}: ${t.error}`);
      const queued = t.states.get('queued')!;
      const lastDone = Math.max(...t.framesDone.values());
      if (t.framesDone.size !== count) throw new Error(`(c) ${t.framesDone.size} of ${count} frames done`);
      const detail = await getJson<JobDetail>(farm.httpUrl, farm.token, apiPath('getJob', { id: job.id }));
      const renderMs = new Map(detail.frameList.map((f) => [f.number, f.renderMs ?? 0]));
      const [firstFrame, firstDoneAt] = [...t.framesDone].sort((x, y) => x[1] - y[1])[0]!;
      await farm.waitForIdleWorker();
      return {
        renderSum: [...renderMs.values()].reduce((x, y) => x + y, 0),
        startup: firstDoneAt - t.firstAssigned! - renderMs.get(firstFrame)!,
        total: completed - start,
        queuedToCompleted: completed - queued,
        firstToLast: lastDone - t.firstAssigned!,
        probe: queued - (t.states.get('probing') ?? start),
        encode: completed - (t.states.get('encoding') ?? completed),
      };
    };

    const variants: Record<'a' | 'b' | 'c' | 'short', (round: number) => Promise<void>> = {
      a: async (round) => {
        const { elapsed, frameTimes } = await plainBlender(scene, frames, path.join(work, `a${round}`));
        times.a.push(elapsed);
        times.aFrames.push(frameTimes);
      },
      b: async (round) => {
        const dir = path.join(work, `b${round}`);
        const start = performance.now();
        for (let f = 1; f <= frames; f++) await blender(scene, ['-o', path.join(dir, 'f_####'), '-F', 'PNG', '-f', String(f)]);
        times.b.push(performance.now() - start);
        if (countPngs(dir) !== frames) throw new Error(`(b) wrote ${countPngs(dir)} of ${frames} frames`);
      },
      c: async () => {
        times.c.push(await throughFarm(scene, frames));
      },
      // The short job's (a) and (c) back to back, so they share the moment's noise.
      short: async (round) => {
        times.aShort.push((await plainBlender(shortScene, shortFrames, path.join(work, `s${round}`))).elapsed);
        times.cShort.push(await throughFarm(shortScene, shortFrames));
      },
    };

    try {
      for (let round = 0; round < rounds; round++) {
        // Rotate the order each round (abc…, bc…a, …) so no variant always runs first or last.
        const order = (['a', 'b', 'c', 'short'] as const).map((_, i, all) => all[(i + round) % all.length]!);
        for (const v of order) {
          ctx.log(`round ${round + 1}/${rounds}: (${v})`);
          await variants[v](round);
        }
      }
    } finally {
      await farm.close();
      rmSync(work, { recursive: true, force: true });
    }

    const a = median(times.a);
    const b = median(times.b);
    const c = {
      total: median(times.c.map((t) => t.total)),
      queuedToCompleted: median(times.c.map((t) => t.queuedToCompleted)),
      firstToLast: median(times.c.map((t) => t.firstToLast)),
      probe: median(times.c.map((t) => t.probe)),
      encode: median(times.c.map((t) => t.encode)),
      renderSum: median(times.c.map((t) => t.renderSum)),
      startup: median(times.c.map((t) => t.startup)),
    };
    const aFrames = median(times.aFrames);
    const handoff = c.firstToLast - c.startup - c.renderSum;
    // Ratios per round (the variants of a round ran minutes apart at most), then their spread.
    const perRound = (top: number[], bottom: number[]) => top.map((value, i) => value / bottom[i]!);
    const withProbe = perRound(times.c.map((t) => t.total), times.a);
    const shortWithProbe = perRound(times.cShort.map((t) => t.total), times.aShort);
    const rows = [
      { figure: `(a) plain \`-a\`, ${frames} frames, -t ${threads}`, value: fmtSpread(times.a, fmtS) },
      { figure: '(b) one process per frame', value: fmtSpread(times.b, fmtS) },
      { figure: '(c) farm, job queued → completed (no probe)', value: fmtSpread(times.c.map((t) => t.queuedToCompleted), fmtS) },
      { figure: '(c) farm, submit → completed (with the probe)', value: fmtSpread(times.c.map((t) => t.total), fmtS) },
      { figure: '(c)/(a), fair: queued → completed', value: fmtSpread(perRound(times.c.map((t) => t.queuedToCompleted), times.a), fmtRatio), target: '≤ 1.05', pass: c.queuedToCompleted / a <= 1.05 },
      { figure: '(c)/(a) submit → completed, probe and video included', value: fmtSpread(withProbe, fmtRatio), target: '≤ 1.05', pass: median(withProbe) <= 1.05 },
      { figure: `${shortFrames}-frame job: (c)/(a) submit → completed`, value: fmtSpread(shortWithProbe, fmtRatio) },
      { figure: '(b)/(c), fair: queued → completed', value: fmtSpread(perRound(times.b, times.c.map((t) => t.queuedToCompleted)), fmtRatio), target: '≥ 5', pass: b / c.queuedToCompleted >= 5 },
    ];
    const details = [
      `Scene: \`makeTestScene\` (Cycles, 192×108 = 10 % of 1080p, 4 samples, no denoising), frames 1–${frames}; every`,
      `variant renders with \`-t ${threads}\` and \`-Y\`, PNG. (c) is a real server and one real worker (\`RenderWorker\`, one`,
      'Blender session kept open for the job) in the benchmark process, submitted over HTTP; its times come from the',
      "farm's own events. Between jobs the worker keeps a Blender started with no scene (`prewarm_blender`, on by",
      'default), so a job waits for its scene to load but not for Blender to start; each variant begins once that',
      "Blender waits, so its start-up overlaps nothing timed. The fair (c) starts when the job is queued, i.e. after",
      'the ~2 s scene probe that (a) and (b) do not need, and ends at `completed`, so it includes the video encoding. ' +
        `${rounds} rounds, order rotated each round; medians, with (min–max) over the rounds. The ${shortFrames}-frame job`,
      `(same scene, frames 1–${shortFrames}) runs (a) then (c) within one turn of each round.`,
      '',
      mdTable(
        ['round', '(a) -a', '(b) per frame', '(c) submit→completed', '(c) queued→completed', '(c) first assigned→last uploaded', 'probe', 'encode'],
        times.a.map((_, i) => [
          i + 1,
          fmtS(times.a[i]!),
          fmtS(times.b[i]!),
          fmtS(times.c[i]!.total),
          fmtS(times.c[i]!.queuedToCompleted),
          fmtS(times.c[i]!.firstToLast),
          fmtS(times.c[i]!.probe),
          fmtS(times.c[i]!.encode),
        ]),
      ),
      '',
      mdTable(
        ['median', 'value'],
        [
          ['(c) first frame assigned → last frame uploaded (rendering only)', `${fmtS(c.firstToLast)} = ${fmtRatio(c.firstToLast / a)} of (a)`],
          ['(c) probe (probing → queued)', fmtS(c.probe)],
          ['(c) video encoding (encoding → completed)', fmtS(c.encode)],
          ['per frame: (a) / (b) / (c) queued→completed', `${fmtS(a / frames)} / ${fmtS(b / frames)} / ${fmtS(c.queuedToCompleted / frames)}`],
        ],
      ),
      '',
      'Where the time goes (medians):',
      '',
      mdTable(
        ['part', '(a) plain -a', '(c) farm'],
        [
          ['Blender start-up and scene load (c: .blend download + scene loaded into the pre-warmed Blender)', fmtS(a - aFrames), fmtS(c.startup)],
          ["frames: Blender's `Time:` lines (a); worker's command→saved render times (c)", fmtS(aFrames), fmtS(c.renderSum)],
          ['hand-off between frames (c: saved → upload, `ready`, next `render`, command)', '—', `${fmtS(handoff)} (${fmtMs(handoff / Math.max(1, frames - 1))} per frame)`],
          ['probe before (c); video after (c)', '—', `${fmtS(c.probe)}; ${fmtS(c.encode)}`],
        ],
      ),
    ].join('\n');
    return { rows, details };
  },
};
