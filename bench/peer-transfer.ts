/**
 * A project to many workers (issue #17 §3): a project goes to 1 worker, to 16 workers
 * without peer transfer, and to 16 workers with it, the server's uplink limited by
 * serve_limit_mbps. Each worker is a process of its own on 127.0.0.1
 * (bench/lib/file-worker-child.ts: the real connection, caches, fetcher and peer server,
 * no Blender), each warmed up with a small project first; the clock runs from the moment all are told to fetch the job's project until
 * the last holds all of it, laid out. Figures: each as a ratio to one worker alone, and the
 * bytes the server sent (its own /metrics counter).
 *
 * Two farms: the one of the issue (a 1 GB project, 1000 Mbit/s), and the same scaled so
 * that this one machine has as much room per worker as the server's link (a real farm's
 * workers each have their own CPU, disk and network link; here 16 share two cores and a
 * disk, which move about as much in all as a 1000 Mbit/s link alone).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, statfsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { BlendRef, ProjectRef } from '../src/protocol/index.ts';
import type { FetchStats } from '../src/worker/file-fetcher.ts';
import { fakeBlend, uploadProject } from '../testkit/api.ts';
import { fmtMB, fmtRatio, fmtS, mdTable, median, type BenchContext, type BenchResult, type Benchmark } from './lib/harness.ts';
import { option } from './lib/options.ts';
import { ServerProcess } from './lib/server-process.ts';

const CHILD = fileURLToPath(new URL('./lib/file-worker-child.ts', import.meta.url));
const MiB = 1024 * 1024;

interface Run {
  ms: number;
  /** CPU time of the workers and the server during the run. */
  cpuMs: number;
  serverBytes: number;
  peerBytes: number;
  filesFromServer: number;
  peerFailures: number;
  /** Slowest and fastest worker, ms. */
  first: number;
}

/** Bytes the server has sent workers so far, from its /metrics. */
const serverBytesSent = (server: ServerProcess) => server.metric('archenland_worker_download_bytes_total');

/** `count` worker processes with fresh caches, all told at once to fetch the project; resolves when the last holds it. */
async function distribute(server: ServerProcess, count: number, peers: boolean, target: Delivery, warmUp: Delivery, logs: boolean): Promise<Run> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'archenland-peers-'));
  const children: ChildProcess[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const name = `w${String(i).padStart(2, '0')}`;
      const child = fork(CHILD, [], {
        execArgv: ['--import', 'tsx'],
        env: {
          ...process.env,
          ARCHENLAND_BENCH_FILE_WORKER: JSON.stringify({
            httpUrl: server.httpUrl,
            wsUrl: server.wsUrl,
            token: server.workerToken,
            cacheDir: path.join(root, name),
            name,
            ...(peers ? { peerPort: 0 } : {}),
          }),
          ...(logs ? { ARCHENLAND_BENCH_LOGS: '1' } : {}),
        },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      children.push(child);
    }
    await Promise.all(children.map((child) => once(child, 'message')));
    // A small project first, untimed: a fresh process compiles its fetch, hash and peer code
    // on first use (about 4 s of CPU for 16 processes on this machine), which a farm's
    // long-running workers paid long before.
    await Promise.all(children.map((child) => prepared(child, warmUp)));
    const cpuNow = async () => {
      const answers = children.map((child) => once(child, 'message') as Promise<[{ ms: number }]>);
      for (const child of children) child.send({ type: 'cpu' });
      const workersMs = (await Promise.all(answers)).reduce((sum, [answer]) => sum + answer.ms, 0);
      const { cpu } = await server.stats();
      return workersMs + (cpu.user + cpu.system) / 1000;
    };
    const cpuBefore = await cpuNow();
    const before = await serverBytesSent(server);
    const started = performance.now();
    const results = await Promise.all(
      children.map(async (child) => {
        const stats = await prepared(child, target);
        return { at: performance.now() - started, stats };
      }),
    );
    const ms = performance.now() - started;
    const cpuMs = (await cpuNow()) - cpuBefore;
    const sum = (pick: (stats: FetchStats) => number) => results.reduce((total, result) => total + pick(result.stats), 0);
    return {
      ms,
      cpuMs,
      serverBytes: (await serverBytesSent(server)) - before,
      peerBytes: sum((s) => s.fromPeers),
      filesFromServer: sum((s) => s.filesFromServer),
      peerFailures: sum((s) => s.peerFailures),
      first: Math.min(...results.map((result) => result.at)),
    };
  } finally {
    for (const child of children) {
      if (child.connected) child.send({ type: 'stop' });
    }
    await Promise.all(children.map((child) => (child.exitCode === null ? once(child, 'exit') : undefined)));
    rmSync(root, { recursive: true, force: true });
  }
}

/** A project and its .blend, as the server knows them. */
interface Delivery {
  project: ProjectRef;
  blend: BlendRef;
}

/** Tells a worker process to fetch a job's project; resolves with its fetch figures once it holds all of it. */
function prepared(child: ChildProcess, { project, blend }: Delivery): Promise<FetchStats> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: { type: string; stats?: FetchStats; error?: string }) => {
      if (message.type !== 'done' && message.type !== 'failed') return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (message.type === 'done') resolve(message.stats!);
      else reject(new Error(`a worker failed: ${message.error}`));
    };
    const onExit = (code: number | null) => reject(new Error(`a worker exited with code ${code}`));
    child.on('message', onMessage);
    child.once('exit', onExit);
    child.send({ type: 'prepare', project, blend });
  });
}

interface Farm {
  title: string;
  files: number;
  fileMB: number;
  limitMbps: number;
}

interface FarmResult {
  farm: Farm;
  total: number;
  runs: { alone: Run[]; plain: Run[]; peers: Run[] };
}

/** One farm: the project uploaded once, then rounds of 1 worker, N with peers, N without. */
async function measureFarm(ctx: BenchContext, farm: Farm, workers: number, rounds: number, plainRounds: number, logs: boolean): Promise<FarmResult> {
  const projectBytes = farm.files * farm.fileMB * MiB;
  // Every worker's cache holds the whole project at the end of a round: room for all of them, and some.
  const { bavail, bsize } = statfsSync(os.tmpdir());
  const needed = (workers + 2) * projectBytes + 2 * 1024 * MiB;
  if (bavail * bsize < needed) throw new Error(`${os.tmpdir()} has ${fmtMB(bavail * bsize)} free; ${workers} workers × ${fmtMB(projectBytes)} need ${fmtMB(needed)}: use --files, --file-mb or --workers to scale down`);
  const server = await ServerProcess.start({ serve_limit_mbps: farm.limitMbps, max_upload_mb: farm.fileMB + 64 }, { logs });
  try {
    ctx.log(`${farm.title}: uploading ${farm.files} files × ${farm.fileMB} MB; server limited to ${farm.limitMbps} Mbit/s`);
    const blend = fakeBlend(MiB);
    const target = await uploadProject(
      server.httpUrl,
      server.token,
      Array.from({ length: farm.files }, (_, i) => ({ path: `tex/t${String(i).padStart(3, '0')}.exr`, data: randomBytes(farm.fileMB * MiB) })),
      blend,
    );
    const warmUp = await uploadProject(
      server.httpUrl,
      server.token,
      Array.from({ length: 4 }, (_, i) => ({ path: `warm/w${i}.exr`, data: randomBytes(256 * 1024) })),
      fakeBlend(64 * 1024),
    );
    const runs = { alone: [] as Run[], plain: [] as Run[], peers: [] as Run[] };
    const step = async (list: Run[], count: number, peers: boolean, label: string) => {
      list.push(await distribute(server, count, peers, target, warmUp, logs));
      const run = list.at(-1)!;
      ctx.log(`  ${label}: ${fmtS(run.ms)}, server sent ${fmtMB(run.serverBytes)}`);
    };
    // Rounds alternate the settings, so a change in the machine's load falls on all of them.
    for (let round = 0; round < Math.max(rounds, plainRounds); round++) {
      if (round < rounds) {
        await step(runs.alone, 1, true, `round ${round + 1}, 1 worker`);
        await step(runs.peers, workers, true, `round ${round + 1}, ${workers} workers with peers`);
      }
      if (round < plainRounds) await step(runs.plain, workers, false, `round ${round + 1}, ${workers} workers without peers`);
    }
    return { farm, total: projectBytes + blend.length, runs };
  } finally {
    await server.stop();
  }
}

export const peerTransfer: Benchmark = {
  name: 'peer-transfer',
  title: 'A project to many workers: peer transfer',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const workers = option(ctx, 'workers', { default: 16, min: 2, integer: true });
    const files = option(ctx, 'files', { default: 20, quick: 10, min: 1, integer: true });
    const fileMB = option(ctx, 'file-mb', { default: 50, quick: 10, min: 1, integer: true });
    const limitMbps = option(ctx, 'limit-mbps', { default: 1000, min: 1 });
    const scaledFileMB = option(ctx, 'scaled-file-mb', { default: 10, quick: 5, min: 1, integer: true });
    const scaledLimitMbps = option(ctx, 'scaled-limit-mbps', { default: 125, min: 1 });
    const rounds = option(ctx, 'rounds', { default: 2, quick: 1, min: 1, integer: true });
    const plainRounds = option(ctx, 'plain-rounds', { default: 1, min: 0, integer: true });
    const logs = option(ctx, 'server-logs', { default: false });

    const results = [
      await measureFarm(ctx, { title: 'the issue\'s farm', files, fileMB, limitMbps }, workers, rounds, plainRounds, logs),
      await measureFarm(ctx, { title: 'scaled to this machine', files, fileMB: scaledFileMB, limitMbps: scaledLimitMbps }, workers, rounds, plainRounds, logs),
    ];
    const rows = results.flatMap(({ farm, total, runs }) => {
      const times = (list: Run[]) => list.map((run) => run.ms);
      const alone = median(times(runs.alone));
      const ratio = (list: Run[]) =>
        list.length === 0 ? '—' : `${fmtRatio(median(times(list)) / alone)} (min ${fmtRatio(Math.min(...times(list)) / alone)}, max ${fmtRatio(Math.max(...times(list)) / alone)})`;
      const peersRatio = median(times(runs.peers)) / alone;
      const copies = median(runs.peers.map((run) => run.serverBytes)) / total;
      const what = `${fmtMB(total)} project, ${farm.limitMbps} Mbit/s`;
      return [
        { figure: `${what}: 1 worker alone, told → holds it (median, min, max of ${runs.alone.length})`, value: `${fmtS(alone)} (${fmtS(Math.min(...times(runs.alone)))}, ${fmtS(Math.max(...times(runs.alone)))})` },
        { figure: `${what}: ${workers} workers without peers ÷ 1 worker (of ${runs.plain.length})`, value: ratio(runs.plain) },
        { figure: `${what}: ${workers} workers with peers ÷ 1 worker (of ${runs.peers.length})`, value: ratio(runs.peers), target: '≤ 3×', pass: peersRatio <= 3 },
        {
          figure: `${what}: bytes the server sent for ${workers} workers, without / with peers (medians)`,
          value: `${runs.plain.length ? fmtMB(median(runs.plain.map((run) => run.serverBytes))) : '—'} / ${fmtMB(median(runs.peers.map((run) => run.serverBytes)))} (${copies.toFixed(2)} copies)`,
          target: 'with peers ≤ 1.5 copies',
          pass: copies <= 1.5,
        },
      ];
    });
    const table = mdTable(
      ['farm', 'setting', 'round', 'all hold the project', 'first done', 'server sent', 'from peers', 'files from the server', 'peer failures', 'CPU (workers + server)', 'delivered per CPU second'],
      results.flatMap(({ farm, total, runs }) =>
        (['alone', 'plain', 'peers'] as const).flatMap((setting) =>
          runs[setting].map((run, i) => {
            const delivered = (setting === 'alone' ? 1 : workers) * total;
            return [
              `${fmtMB(total)}, ${farm.limitMbps} Mbit/s`,
              { alone: '1 worker', plain: `${workers}, no peers`, peers: `${workers}, peers` }[setting],
              i + 1,
              fmtS(run.ms),
              fmtS(run.first),
              fmtMB(run.serverBytes),
              fmtMB(run.peerBytes),
              run.filesFromServer,
              run.peerFailures,
              fmtS(run.cpuMs),
              `${fmtMB(delivered / (run.cpuMs / 1000))}`,
            ];
          }),
        ),
      ),
    );
    const [asked] = results;
    const delivered = workers * asked!.total;
    const machineRate = median(asked!.runs.peers.map((run) => delivered / (run.ms / 1000)));
    const cpuPerByte = median(asked!.runs.peers.map((run) => run.cpuMs / delivered));
    const cores = os.cpus().length;
    const aloneAsked = median(asked!.runs.alone.map((run) => run.ms));
    const details = [
      `Each worker is a process of its own (bench/lib/file-worker-child.ts: src/worker's connection, caches, fetcher and peer server, no Blender) with an empty cache, on 127.0.0.1; the server is a child process with \`serve_limit_mbps\`. The project (random files and a 1 MB .blend) is uploaded once; then, once all workers have connected and have each fetched a small warm-up project (1 MB, untimed: a fresh process compiles its fetch, hash and peer code on first use, which a farm's long-running workers paid long before), all are told at the same instant to fetch the job's .blend and project and lay it out, as a render worker does before its first frame. The time is until the last one holds all of it (every byte verified by SHA-256). "With peers": every worker has \`peer_port\`; "without": none has, so each fetches everything from the server. Server bytes: the server's own counter (/metrics \`archenland_worker_download_bytes_total\`). CPU: user + system time of the worker processes and the server during the run.`,
      '',
      `**Why two farms.** On a farm, each of the ${workers} workers has its own CPU, disk and network link, so what peers pass on grows with their number. Here all ${workers} share this machine's ${cores} cores and one disk. With peers, the issue's farm delivered ${fmtMB(machineRate)}/s in all (${fmtMB(machineRate / workers)}/s per worker) against ${(asked!.farm.limitMbps / 8).toFixed(0)} MB/s for the server alone, and spent ${((cpuPerByte * MiB) / 1).toFixed(1)} ms of CPU per MB delivered (reading, copying through loopback, hashing, writing): its ${fmtMB(delivered)} need at least ${fmtS((cpuPerByte * delivered) / cores)} on ${cores} idle cores, against ${fmtS(3 * aloneAsked)} for 3× one worker. The second farm gives the server a link of ${scaledLimitMbps} Mbit/s (${(scaledLimitMbps / 8).toFixed(1)} MB/s), about what this machine moves per worker, as on a farm whose workers' links are as fast as the server's; its project is ${files} × ${scaledFileMB} MB.`,
      '',
      table,
    ].join('\n');
    return { rows, details };
  },
};
