/**
 * Tail duplication: the end of a job whose last frames land on a slow worker.
 *
 * When no frame of a job is left to hand out, an idle worker may take a copy of the frame
 * still running on the slowest worker (src/scheduler/scheduler.ts, `tail_duplicates`); the
 * first valid result wins and the other copy is cancelled. This benchmark renders the same
 * kind of job on two real servers (child processes), one with `tail_duplicates = true` and
 * one with `false`, each with its own simulated workers (testkit/sim-worker.ts: real
 * WebSocket clients, real uploads, timers instead of Blender) of which one is 5× slower.
 * Jobs alternate between the two servers (on/off, then off/on, …) and figures are medians.
 *
 * The tail of a job: from the moment its last fresh frame (one never handed out before)
 * is handed out, to the moment the server has every frame (the job leaves `rendering`).
 * Before that moment both settings behave the same; after it, idle workers either wait
 * (off) or copy the slow worker's frame (on).
 */
import { performance } from 'node:perf_hooks';
import { fakeBlend, submitJob } from '../testkit/api.ts';
import { fakeScene, frameFromBuffer, TINY_PNG } from '../testkit/fakes.ts';
import { SimulatedWorkers, type SimEvent } from '../testkit/sim-worker.ts';
import { fmtInt, fmtPct, fmtS, mdTable, mean, median, quantile, sleep, type BenchContext, type BenchResult, type Benchmark } from './lib/harness.ts';
import { option } from './lib/options.ts';
import { ServerProcess } from './lib/server-process.ts';

type Mode = 'on' | 'off';

interface Round {
  round: number;
  mode: Mode;
  jobId: string;
  frames: number;
  makespan: number;
  /** Last fresh frame handed out → server has all frames. */
  tail: number;
  /** First worker left with nothing fresh to take (its first upload answered after the last fresh hand-out) → all frames. */
  idleTail: number;
  ideal: number;
  copies: number;
  /** Copies whose result won (the original holder lost). */
  copyWon: number;
  /** Copies of frames the slow worker held, and how many of those won. */
  slowCopies: number;
  slowCopyWon: number;
  /** Frame `cancel`s received (not the job-wide release every worker gets when the job ends). */
  cancels: number;
  cancelsStopped: number;
  refused: number;
  /** Frames accepted exactly once / accepted more than once / never accepted. */
  acceptedOnce: number;
  acceptedTwice: number;
  missing: number;
  slowFrames: number;
  state: string;
}

interface Farm {
  mode: Mode;
  /** Frames of the job being submitted (what the simulated probe reports). */
  frames: number;
  server: ServerProcess;
  sims: SimulatedWorkers;
  events: SimEvent[];
}

export const tailDuplication: Benchmark = {
  name: 'tail-duplication',
  title: 'Tail duplication: a slow worker at the end of a job',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const workers = option(ctx, 'workers', { default: 8, min: 1, integer: true });
    const frames = option(ctx, 'frames', { default: 100, quick: 50, min: 1, integer: true });
    const meanMs = option(ctx, 'frame-ms', { default: 300, min: 0 });
    const jitter = option(ctx, 'jitter', { default: 0.3, min: 0, max: 1 });
    const slow = option(ctx, 'slow', { default: 5, min: 1 });
    const rounds = option(ctx, 'rounds', { default: 20, quick: 10, min: 1, integer: true });
    const logs = option(ctx, 'server-logs', { default: false });
    const slowIndex = workers - 1;
    const speedSum = workers - 1 + 1 / slow;
    // All workers start together, so with a fixed job length the slow worker would be at about the
    // same point of its frame whenever fresh frames run out, and the tail without copies would
    // depend on the chosen length. Each round's length is drawn from frames … frames + spread − 1,
    // the spread being one slow frame's worth of the farm's throughput: the end falls at every
    // point of the slow worker's frame alike. Both jobs of a round get the same length.
    const spread = option(ctx, 'frame-spread', { default: Math.round(slow * speedSum), min: 0, integer: true });
    const maxFrames = frames + Math.max(0, spread - 1);

    // Each frame costs the same "work" whoever renders it (its own copy included): drawn once per
    // job and frame, multiplied by the worker's slowness.
    const work = new Map<string, Float64Array>();
    const workOf = (jobId: string): Float64Array => {
      let w = work.get(jobId);
      if (!w) {
        w = new Float64Array(maxFrames + 1);
        for (let f = 1; f <= maxFrames; f++) w[f] = meanMs * (1 - jitter + 2 * jitter * Math.random());
        work.set(jobId, w);
      }
      return w;
    };

    const farms: Farm[] = [];
    try {
      for (const mode of ['on', 'off'] as const) {
        const server = await ServerProcess.start({ tail_duplicates: mode === 'on' }, { logs });
        const events: SimEvent[] = [];
        const farm = { mode, frames } as Farm;
        const sims = await SimulatedWorkers.start({
          wsUrl: server.wsUrl,
          httpUrl: server.httpUrl,
          token: server.workerToken,
          count: workers,
          renderMs: (jobId, frame, index) => workOf(jobId)[frame]! * (index === slowIndex ? slow : 1),
          scene: () => fakeScene(1, farm.frames),
          frame: frameFromBuffer(TINY_PNG),
          namePrefix: `sim-${mode}`,
          trace: (event) => events.push(event),
        });
        farms.push(Object.assign(farm, { server, sims, events }));
      }
      ctx.log(
        `${workers} workers (worker ${slowIndex} ${slow}× slower) × ${frames}–${maxFrames} frames of ${meanMs} ms ±${jitter * 100} %; ${rounds} rounds, duplicates on and off alternating`,
      );

      const results: Round[] = [];
      for (let r = 1; r <= rounds; r++) {
        const order = r % 2 === 1 ? farms : [...farms].reverse();
        const length = frames + Math.floor(Math.random() * Math.max(1, spread));
        for (const farm of order) {
          farm.frames = length;
          const result = await oneJob(farm, r, speedSum, workOf, slowIndex);
          results.push(result);
          ctx.log(
            `round ${r} ${farm.mode.padEnd(3)}: ${length} frames, makespan ${fmtS(result.makespan)}, tail ${fmtS(result.tail)}, ${result.copies} copies, ${result.cancels} cancels, ${result.acceptedOnce}/${length} accepted once`,
          );
        }
      }

      // ---- figures ----
      const of = (mode: Mode) => results.filter((x) => x.mode === mode);
      const med = (mode: Mode, pick: (x: Round) => number) => median(of(mode).map(pick));
      const makespan = { on: med('on', (x) => x.makespan), off: med('off', (x) => x.makespan) };
      const tail = { on: med('on', (x) => x.tail), off: med('off', (x) => x.tail) };
      const idleTail = { on: med('on', (x) => x.idleTail), off: med('off', (x) => x.idleTail) };
      const ideal = median(results.map((x) => x.ideal));
      const tailCut = 1 - tail.on / tail.off;
      const makespanCut = 1 - makespan.on / makespan.off;
      // Paired per round (each round has one job of each), as a check on the ratio of medians.
      const paired = Array.from({ length: rounds }, (_, i) => {
        const on = results.find((x) => x.round === i + 1 && x.mode === 'on')!;
        const off = results.find((x) => x.round === i + 1 && x.mode === 'off')!;
        return 1 - on.tail / off.tail;
      });
      const sum = (list: Round[], pick: (x: Round) => number) => list.reduce((a, x) => a + pick(x), 0);
      const on = of('on');
      const off = of('off');
      const copies = sum(on, (x) => x.copies);
      const cancels = sum(on, (x) => x.cancels);
      const stopped = sum(on, (x) => x.cancelsStopped);
      const refused = sum(on, (x) => x.refused);
      const copyWon = sum(on, (x) => x.copyWon);
      const slowCopies = sum(on, (x) => x.slowCopies);
      const slowCopyWon = sum(on, (x) => x.slowCopyWon);
      const allOnce = results.every((x) => x.acceptedOnce === x.frames && x.acceptedTwice === 0 && x.missing === 0 && x.state === 'completed');
      const offClean = sum(off, (x) => x.copies + x.cancels) === 0;
      const losersCancelled = cancels === copies && stopped + refused === copies;
      const errors = farms.flatMap((f) => f.sims.stats.errors);
      const sized = `${workers} workers, one ${slow}× slower, ${frames}–${maxFrames} frames of ${meanMs} ms ±${jitter * 100} %; median of ${rounds}`;

      const rows = [
        { figure: `makespan, duplicates off / on (${sized})`, value: `${fmtS(makespan.off)} / ${fmtS(makespan.on)}` },
        { figure: 'ideal makespan (Σ frame work / Σ worker speeds)', value: `${fmtS(ideal)} (off +${fmtPct(makespan.off / ideal - 1)}, on +${fmtPct(makespan.on / ideal - 1)})` },
        { figure: 'tail (last fresh frame handed out → server has all frames), off / on', value: `${fmtS(tail.off)} / ${fmtS(tail.on)}` },
        {
          figure: 'tail shorter with duplicates (1 − on/off, medians)',
          value: `${fmtPct(tailCut)} (paired per round: median ${fmtPct(median(paired))})`,
          target: '≥ 25 % shorter',
          pass: tailCut >= 0.25,
        },
        { figure: 'makespan shorter with duplicates (1 − on/off, medians)', value: fmtPct(makespanCut) },
        {
          figure: 'every loser cancelled; every frame accepted exactly once',
          value: `${fmtInt(copies)} copies → ${fmtInt(cancels)} cancels (${stopped} stopped mid-render, ${refused} uploads refused); ${results.filter((x) => x.acceptedOnce === x.frames && x.acceptedTwice === 0).length}/${results.length} jobs all once${offClean ? '' : '; copies with duplicates off!'}`,
          target: 'one cancel per copy, all once',
          pass: allOnce && losersCancelled && offClean && copies > 0 && errors.length === 0,
        },
      ];

      const details = [
        `${sized} rounds per setting. Two real servers in child processes, one with \`tail_duplicates = true\` and one`,
        `with \`false\`, each with its own ${workers} simulated workers (real WebSocket clients and HTTP uploads, timers instead of`,
        `Blender). Worker ${slowIndex} renders every frame ${slow}× slower. Each frame's work is drawn once per job (uniform`,
        `${(meanMs * (1 - jitter)).toFixed(0)}–${(meanMs * (1 + jitter)).toFixed(0)} ms) and is the same for a copy; a worker's render time is the frame's`,
        'work × its slowness. Jobs alternate between the servers (on, off; then off, on; …), one job at a time. Both jobs',
        `of a round have the same length: ${frames} frames plus 0–${spread - 1} drawn per round (one slow frame's worth of throughput),`,
        "so that the end of the job falls at any point of the slow worker's frame (all workers start together: with one",
        'fixed length the slow worker would always be at about the same point of its frame at the end). Each job is',
        'waited on until completed (video included) before the next. Both servers keep their workers between jobs, so',
        "the scheduler's learnt frame times carry over, as on a real farm.",
        '',
        '- **makespan**: first `render` received by a worker → the server has every frame (the job leaves `rendering`).',
        '- **tail**: the last fresh frame (never handed out before) received by a worker → the server has every frame.',
        '  Up to that moment both settings hand out the same frames; after it, idle workers either wait (off) or copy',
        '  the running frame with the most time left (on). "Idle tail" starts instead at the first upload answered',
        '  after that moment: the first worker left with nothing fresh to take.',
        `- **ideal**: Σ frame work / Σ worker speeds (${workers - 1} + 1/${slow}): perfectly divisible work, a lower bound.`,
        '',
        mdTable(
          ['median', 'duplicates off', 'duplicates on'],
          [
            ['makespan', fmtS(makespan.off), fmtS(makespan.on)],
            ['tail (last fresh frame handed out → all frames)', fmtS(tail.off), fmtS(tail.on)],
            ['idle tail (first worker with nothing fresh → all frames)', fmtS(idleTail.off), fmtS(idleTail.on)],
            ['tail, mean instead of median (p90)', `${fmtS(mean(off.map((x) => x.tail)))} (${fmtS(quantile(off.map((x) => x.tail), 0.9))})`, `${fmtS(mean(on.map((x) => x.tail)))} (${fmtS(quantile(on.map((x) => x.tail), 0.9))})`],
            ['frames rendered by the slow worker (accepted or not)', String(med('off', (x) => x.slowFrames)), String(med('on', (x) => x.slowFrames))],
            ['copies handed out per job', String(med('off', (x) => x.copies)), String(med('on', (x) => x.copies))],
          ],
        ),
        '',
        `With duplicates on: ${fmtInt(copies)} copies in ${on.length} jobs; the copy won ${copyWon} times, the original ${copies - copyWon}.`,
        `${slowCopies} copies were of frames held by the slow worker (the copy won ${slowCopyWon} of them), ${copies - slowCopies} of frames held by`,
        `fast workers (the copy won ${copyWon - slowCopyWon}): an idle worker copies a fast worker's frame when that frame seems to have more time`,
        "left than the copier's own average frame time. A losing copy is a wasted render (on a real farm it also loads the scene). Each loser",
        `received a \`cancel\`: ${fmtInt(cancels)} cancels, ${stopped} of them stopping a render in progress and ${refused} arriving while`,
        "the loser was already uploading (its upload was then refused as already done; the sim uploads before saying",
        '`ready`, the real worker after). Frames accepted exactly once in every job, from the workers\' side.',
        '',
        mdTable(
          ['round', 'setting', 'frames', 'makespan', 'tail', 'idle tail', 'ideal', 'copies (copy won)', 'cancels (stopped / upload refused)', 'accepted once'],
          results.map((x) => [
            x.round,
            x.mode,
            x.frames,
            fmtS(x.makespan),
            fmtS(x.tail),
            fmtS(x.idleTail),
            fmtS(x.ideal),
            `${x.copies} (${x.copyWon})`,
            `${x.cancels} (${x.cancelsStopped} / ${x.refused})`,
            `${x.acceptedOnce}/${x.frames}${x.acceptedTwice ? `, ${x.acceptedTwice} twice` : ''}${x.state !== 'completed' ? `, job ${x.state}` : ''}`,
          ]),
        ),
        ...(errors.length ? ['', 'Client errors:', '', ...errors.slice(0, 5).map((e) => `- ${e}`)] : []),
      ].join('\n');
      return { rows, details };
    } finally {
      for (const farm of farms) {
        await farm.sims.close();
        await farm.server.stop();
      }
    }
  },
};

async function oneJob(
  farm: Farm,
  round: number,
  speedSum: number,
  workOf: (jobId: string) => Float64Array,
  slowIndex: number,
): Promise<Round> {
  const { server, frames } = farm;
  const from = farm.events.length;
  const job = await submitJob(server.httpUrl, server.token, fakeBlend());
  const ended = await server.waitForJob(job.id, ['encoding', 'completed', 'failed', 'cancelled'], 120_000);
  const final = await server.waitForJob(job.id, ['completed', 'failed', 'cancelled'], 120_000);
  // Late answers (a refused upload of a losing copy) land after the job left `rendering`.
  await sleep(200);
  const events = farm.events.slice(from).filter((e) => e.jobId === job.id);

  const firstHandOut = new Map<number, { at: number; worker: number }>();
  let copies = 0;
  let slowCopies = 0;
  let slowFrames = 0;
  for (const e of events) {
    if (e.type !== 'render') continue;
    if (e.worker === slowIndex) slowFrames++;
    const original = firstHandOut.get(e.frame!);
    if (original) {
      copies++;
      if (original.worker === slowIndex) slowCopies++;
    } else firstHandOut.set(e.frame!, { at: e.at, worker: e.worker });
  }
  const firstRender = Math.min(...[...firstHandOut.values()].map((x) => x.at));
  const lastFresh = Math.max(...[...firstHandOut.values()].map((x) => x.at));
  const allDone = ended.state === 'cancelled' ? performance.now() : ended.at;
  const firstIdle = events.find((e) => (e.type === 'accepted' || e.type === 'refused') && e.at > lastFresh)?.at ?? lastFresh;

  const accepted = new Map<number, number>();
  let copyWon = 0;
  let slowCopyWon = 0;
  for (const e of events) {
    if (e.type !== 'accepted') continue;
    accepted.set(e.frame!, (accepted.get(e.frame!) ?? 0) + 1);
    const original = firstHandOut.get(e.frame!);
    if (original && original.worker !== e.worker) {
      copyWon++;
      if (original.worker === slowIndex) slowCopyWon++;
    }
  }
  let acceptedOnce = 0;
  let acceptedTwice = 0;
  for (const n of accepted.values()) {
    if (n === 1) acceptedOnce++;
    else acceptedTwice += n - 1;
  }
  // Frame cancels only: when a job ends every worker also gets a job-wide `cancel` (no frame) to release it.
  const cancels = events.filter((e) => e.type === 'cancel' && e.frame !== undefined);
  const w = workOf(job.id);
  let totalWork = 0;
  for (let f = 1; f <= frames; f++) totalWork += w[f]!;
  return {
    round,
    mode: farm.mode,
    jobId: job.id,
    frames,
    makespan: allDone - firstRender,
    tail: allDone - lastFresh,
    idleTail: allDone - firstIdle,
    ideal: totalWork / speedSum,
    copies,
    copyWon,
    slowCopies,
    slowCopyWon,
    cancels: cancels.length,
    cancelsStopped: cancels.filter((e) => e.stopped).length,
    refused: events.filter((e) => e.type === 'refused').length,
    acceptedOnce,
    acceptedTwice,
    missing: frames - accepted.size,
    slowFrames,
    state: final.state,
  };
}
