/**
 * Tiles: one still of meaningful render time on N real workers (real Blender), rendered
 * whole (`tiles=off`: one worker renders, the others wait) and split (`tiles=auto`: one
 * tile per idle worker, stitched on the server), in interleaved rounds. Reports the median
 * time from the job being queued to the frame being done, and the speed-up.
 */
import { openAsBlob } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { FarmChange } from '../src/protocol/index.ts';
import { startTestFarm, submitBlend, waitForJob } from '../testkit/farm.ts';
import { makeTestScene } from '../testkit/scenes.ts';
import { fmtRatio, fmtS, mdTable, median, type BenchContext, type BenchResult, type Benchmark } from './lib/harness.ts';
import { option } from './lib/options.ts';

interface Round {
  variant: 'whole' | 'tiles';
  /** job queued (probe done) → frame done */
  renderMs: number;
  /** submit answered → job completed (probe and video included) */
  totalMs: number;
  tiles: number;
  /** Blender's time for the frame as workers report it; for tiles, the sum over the tiles. */
  blenderMs: number;
}

export const tiles: Benchmark = {
  name: 'tiles',
  title: 'Tiles: one still on several workers, split vs whole',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const workers = option(ctx, 'workers', { default: 2, min: 1, integer: true });
    const rounds = option(ctx, 'rounds', { default: 3, quick: 1, min: 1, integer: true });
    const samples = option(ctx, 'samples', { default: 256, quick: 64, min: 1, integer: true });
    const [width, height] = [480, 270];
    const scene = await openAsBlob(await makeTestScene({ frames: '1', width, height, samples, detail: true }));
    // tail copies off: a copy of the whole frame on the idle worker would hide the comparison
    const farm = await startTestFarm({ workers, server: { tail_duplicates: false } });
    const results: Round[] = [];
    try {
      for (let round = 0; round < rounds; round++) {
        for (const variant of ['whole', 'tiles'] as const) {
          results.push(await renderOnce(farm, scene, variant));
          const r = results.at(-1)!;
          ctx.log(`round ${round + 1}/${rounds} ${variant}: frame in ${fmtS(r.renderMs)}${r.tiles ? ` (${r.tiles} tiles)` : ''}`);
        }
      }
    } finally {
      await farm.close();
    }
    const of = (variant: Round['variant'], pick: (r: Round) => number) => median(results.filter((r) => r.variant === variant).map(pick));
    const whole = of('whole', (r) => r.renderMs);
    const split = of('tiles', (r) => r.renderMs);
    const speedup = whole / split;
    const rows = [
      { figure: `still on ${workers} workers: queued → frame done, whole`, value: fmtS(whole) },
      { figure: `still on ${workers} workers: queued → frame done, tiles`, value: fmtS(split) },
      { figure: 'work added by splitting (sum of tile render times / whole render time)', value: fmtRatio(of('tiles', (r) => r.blenderMs) / of('whole', (r) => r.blenderMs)) },
      { figure: 'speed-up with tiles (whole / tiles)', value: fmtRatio(speedup), target: `≥ ${(workers * 0.7).toFixed(1)}×`, pass: speedup >= workers * 0.7 },
    ];
    const details = [
      `${workers} real workers (\`-t 1\` each, real Blender) and a real server in the benchmark process. The scene is the`,
      `generated test scene with extra objects (\`detail\`), one frame at ${width}×${height}, Cycles ${samples} samples, no denoising.`,
      'Each round submits it twice over HTTP: `tiles=off` (one worker renders it whole while the others wait) and',
      '`tiles=auto` (split into one tile per idle worker by the scheduler, border-rendered, stitched on the server).',
      'The clock runs from the job being queued (the probe is the same for both) to the frame being done, so the',
      "Blender session start on each worker, the tile uploads and the stitch are all inside it. Target: at least 70 %",
      'of a perfect split. Medians of the rounds; the test suite (test/tiles.test.ts) checks the stitched frame is',
      'within 2/255 of a whole render.',
      '',
      mdTable(
        ['round', 'variant', 'queued → frame done', 'submit → completed (probe, video)', 'tiles', 'render time (sum over tiles)'],
        results.map((r, i) => [Math.floor(i / 2) + 1, r.variant, fmtS(r.renderMs), fmtS(r.totalMs), r.tiles || '—', fmtS(r.blenderMs)]),
      ),
    ].join('\n');
    return { rows, details };
  },
};

async function renderOnce(farm: Awaited<ReturnType<typeof startTestFarm>>, scene: Blob, variant: Round['variant']): Promise<Round> {
  let queuedAt = Number.NaN;
  let doneAt = Number.NaN;
  let tileCount = 0;
  let blenderMs = Number.NaN;
  let jobId = '';
  const watch = (change: FarmChange) => {
    if (change.type === 'job' && change.job.id === jobId && change.job.state === 'queued' && Number.isNaN(queuedAt)) queuedAt = performance.now();
    if (change.type !== 'frame' || change.frame.jobId !== jobId) return;
    if (change.frame.tiles) tileCount = change.frame.tiles.states.length;
    if (change.frame.state === 'done' && Number.isNaN(doneAt)) {
      doneAt = performance.now();
      blenderMs = change.frame.renderMs ?? Number.NaN;
    }
  };
  farm.server.farm.on('event', watch);
  try {
    const sent = performance.now();
    const submitted = await submitBlend(farm.server.httpUrl, scene, { tiles: variant === 'whole' ? 'off' : 'auto' });
    if (submitted.status !== 201) throw new Error(`submit answered ${submitted.status}: ${JSON.stringify(submitted.body)}`);
    jobId = submitted.body.id;
    const job = await waitForJob(farm.server, jobId, ['completed', 'failed', 'cancelled'], 600_000);
    if (job.state !== 'completed') throw new Error(`job ${jobId} ended ${job.state}: ${job.error}`);
    if (variant === 'tiles' && tileCount < 2) throw new Error('the still was not split: are the workers idle?');
    return { variant, renderMs: doneAt - queuedAt, totalMs: performance.now() - sent, tiles: tileCount, blenderMs };
  } finally {
    farm.server.farm.off('event', watch);
  }
}
