/**
 * Time to first frame: from the moment a submit's upload is answered (HTTP 201) to the
 * moment an idle worker starts rendering the job's first frame (the farm's `frame` event
 * with state `rendering`), the ~2 s scene probe included. Median of several runs on one
 * real server and one real, idle worker (real Blender).
 */
import { apiPath } from '../src/protocol/index.ts';
import { openAsBlob } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { makeTestScene } from '../testkit/scenes.ts';
import { apiHeaders, postJson } from '../testkit/api.ts';
import { fmtS, mdTable, median, sleep, type BenchContext, type BenchResult, type Benchmark } from './lib/harness.ts';
import { option } from './lib/options.ts';
import { RealFarm } from './lib/real-farm.ts';

interface Run {
  /** request sent → 201 received (the upload itself) */
  upload: number;
  /** 201 → first frame event `rendering` */
  firstFrame: number;
  /** 201 → job queued (the probe, as the farm sees it) */
  probe: number;
  /** 201 → first frame uploaded and done (adds the Blender session start and the render) */
  firstDone: number;
}

export const firstFrame: Benchmark = {
  name: 'first-frame',
  title: 'Time to first frame',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const runs = option(ctx, 'runs', { default: 5, quick: 3, min: 1, integer: true });
    const threads = option(ctx, 'threads', { default: os.cpus().length, min: 1, integer: true });
    const scene = await makeTestScene({ frames: '1-20', width: 192, height: 108, samples: 4 });
    const farm = await RealFarm.start(threads);
    const results: Run[] = [];
    try {
      for (let i = 0; i < runs; i++) {
        await farm.waitForIdleWorker();
        await sleep(300);
        const form = new FormData();
        form.append('file', await openAsBlob(scene), 'scene.blend');
        const sent = performance.now();
        const response = await fetch(`${farm.httpUrl}${apiPath('submitJob')}`, { method: 'POST', body: form, headers: apiHeaders(farm.token) });
        const answered = performance.now();
        const job = (await response.json()) as { id: string; error?: string };
        if (response.status !== 201) throw new Error(`submit answered ${response.status}: ${job.error}`);
        const t = farm.timeline(job.id);
        await farm.until(`the first frame of ${job.id} to be done`, () => t.framesDone.size > 0 || t.states.has('failed'), 120_000);
        if (t.firstAssigned === undefined) throw new Error(`job ${job.id} failed: ${t.error}`);
        results.push({
          upload: answered - sent,
          firstFrame: t.firstAssigned - answered,
          probe: t.states.get('queued')! - answered,
          firstDone: Math.min(...t.framesDone.values()) - answered,
        });
        ctx.log(`run ${i + 1}/${runs}: first frame rendering ${fmtS(results[i]!.firstFrame)} after the 201`);
        await postJson(farm.httpUrl, farm.token, apiPath('cancelJob', { id: job.id }));
      }
    } finally {
      await farm.close();
    }
    const ttff = median(results.map((r) => r.firstFrame));
    const rows = [
      { figure: `201 → first frame rendering, median of ${runs}`, value: fmtS(ttff), target: '< 1 s', pass: ttff < 1000 },
      { figure: '201 → first frame uploaded (adds session start + render)', value: fmtS(median(results.map((r) => r.firstDone))) },
    ];
    const details = [
      `One real server and one idle real worker (\`-t ${threads}\`) in the benchmark process; the scene of the overhead`,
      'benchmark (192×108, 4 samples, 20 frames), submitted over HTTP. The clock starts when the 201 arrives and stops',
      "at the farm's own `frame` event with state `rendering`; the job is then cancelled and the next run waits for the",
      'worker to be idle again. The worker keeps its .blend cache between runs (same file), so only the first run',
      'downloads it (a few hundred kB here).',
      '',
      mdTable(
        ['run', 'upload (sent → 201)', '201 → queued (probe)', '201 → first frame rendering', '201 → first frame done'],
        results.map((r, i) => [i + 1, fmtS(r.upload), fmtS(r.probe), fmtS(r.firstFrame), fmtS(r.firstDone)]),
      ),
    ].join('\n');
    return { rows, details };
  },
};
