/**
 * A real Archenland server (src/server) in a child process on loopback, for benchmarks
 * that read the server's own memory and CPU. The child is bench/lib/server-child.ts.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { ServerSettings } from '../../src/config/index.ts';
import type { FrameCounts, JobState } from '../../src/protocol/index.ts';

const CHILD = fileURLToPath(new URL('./server-child.ts', import.meta.url));

export interface ServerStats {
  memory: NodeJS.MemoryUsage;
  cpu: NodeJS.CpuUsage;
  /** Event-loop delay of the server process since the last reset, ms. */
  loop: { p50: number; p99: number; max: number; mean: number };
  /** Farm events emitted so far, by type. */
  events: Record<string, number>;
  /** Statements prepared so far, by SQL text (only with `countSql`). */
  sql: Record<string, number>;
}

export interface JobUpdate {
  id: string;
  state: JobState;
  counts: FrameCounts;
  error: string | null;
  /** performance.now() in this process when the update arrived. */
  at: number;
}

export class ServerProcess {
  httpUrl = '';
  httpPort = 0;
  wsPort = 0;
  /** A user token, for the API. */
  token = '';
  /** A worker token, for simulated workers. */
  workerToken = '';
  dataDir = '';
  /** jobId -> every state it was reported in, in order. */
  readonly jobs = new Map<string, JobUpdate[]>();
  private nextId = 1;
  private readonly waiting = new Map<number, (stats: ServerStats) => void>();
  private jobListeners: Array<(update: JobUpdate) => void> = [];
  private exited: Promise<number | null>;

  private constructor(
    private readonly child: ChildProcess,
    readonly root: string,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  /**
   * Starts a server on free loopback ports with a fresh data folder. `profileDir` writes a
   * V8 CPU profile of the server there when it stops (`--cpu-prof`).
   */
  static async start(settings: Partial<ServerSettings> = {}, opts: { profileDir?: string; logs?: boolean; countSql?: boolean } = {}): Promise<ServerProcess> {
    const root = mkdtempSync(path.join(os.tmpdir(), 'archenland-bench-'));
    const full: Partial<ServerSettings> = {
      bind: '127.0.0.1',
      port: 0,
      web_port: 0,
      data_dir: path.join(root, 'server'),
      log_level: 'silent',
      ...settings,
    };
    const execArgv = ['--import', 'tsx', '--expose-gc'];
    if (opts.profileDir) execArgv.push('--cpu-prof', `--cpu-prof-dir=${opts.profileDir}`);
    const child = fork(CHILD, [], {
      execArgv,
      env: { ...process.env, ARCHENLAND_BENCH_SERVER: JSON.stringify(full), ...(opts.logs ? { ARCHENLAND_BENCH_LOGS: '1' } : {}), ...(opts.countSql ? { ARCHENLAND_BENCH_COUNT_SQL: '1' } : {}) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const server = new ServerProcess(child, root);
    await new Promise<void>((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`the server process exited with code ${code} before it was ready`));
      child.once('exit', onExit);
      child.on('message', (message: any) => {
        if (message.type === 'ready') {
          child.off('exit', onExit);
          Object.assign(server, {
            httpUrl: message.httpUrl,
            httpPort: message.httpPort,
            wsPort: message.wsPort,
            token: message.token,
            workerToken: message.workerToken,
            dataDir: message.dataDir,
          });
          resolve();
        } else if (message.type === 'job') {
          const update: JobUpdate = { ...message.job, at: performance.now() };
          const list = server.jobs.get(update.id) ?? [];
          list.push(update);
          server.jobs.set(update.id, list);
          for (const listener of server.jobListeners) listener(update);
        } else if (message.type === 'stats') {
          server.waiting.get(message.id)?.(message as ServerStats);
          server.waiting.delete(message.id);
        }
      });
    });
    return server;
  }

  get pid(): number {
    return this.child.pid!;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.wsPort}`;
  }

  /** Resident set size now, bytes (from /proc, so it works even while the server is busy). */
  rss(): number {
    return this.child.exitCode === null ? procStatus(this.pid, 'VmRSS') : Number.NaN;
  }

  /** Peak resident set size since start or the last `resetPeakRss`, bytes. */
  peakRss(): number {
    return this.child.exitCode === null ? procStatus(this.pid, 'VmHWM') : Number.NaN;
  }

  /** Resets the kernel's RSS high-water mark (Linux ≥ 4.0: clear_refs 5); false when not allowed. */
  resetPeakRss(): boolean {
    try {
      writeFileSync(`/proc/${this.pid}/clear_refs`, '5');
      return true;
    } catch {
      return false;
    }
  }

  /** Memory, CPU, event-loop delay and event counts; `gc` runs a full collection first (pauses the server). */
  stats(opts: { resetLoop?: boolean; gc?: boolean } = {}): Promise<ServerStats> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.child.send({ type: 'stats', id, ...opts });
    });
  }

  /** One unlabelled value from the server's /metrics. */
  async metric(name: string): Promise<number> {
    const text = await (await fetch(`${this.httpUrl}/metrics`)).text();
    const value = Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
    if (!Number.isFinite(value)) throw new Error(`the server reports no ${name}`);
    return value;
  }

  /** The time (performance.now()) the job was first reported in one of `states`. */
  stateAt(jobId: string, state: JobState): number | undefined {
    return this.jobs.get(jobId)?.find((u) => u.state === state)?.at;
  }

  waitForJob(jobId: string, states: JobState[], timeoutMs: number): Promise<JobUpdate> {
    const seen = this.jobs.get(jobId)?.find((u) => states.includes(u.state));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.jobListeners = this.jobListeners.filter((l) => l !== listener);
        reject(new Error(`job ${jobId} did not reach ${states.join('/')} within ${timeoutMs} ms`));
      }, timeoutMs);
      const listener = (update: JobUpdate) => {
        if (update.id !== jobId || !states.includes(update.state)) return;
        clearTimeout(timer);
        this.jobListeners = this.jobListeners.filter((l) => l !== listener);
        resolve(update);
      };
      this.jobListeners.push(listener);
    });
  }

  /** Stops the server (graceful close) and removes its data folder unless `keep`. */
  async stop(keep = false): Promise<void> {
    if (this.child.exitCode === null && this.child.connected) {
      this.child.send({ type: 'stop' });
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 30_000);
      await this.exited;
      clearTimeout(timer);
    }
    // ffmpeg or a late write may still be finishing in the data folder: retry the removal.
    if (keep) return;
    try {
      rmSync(this.root, { recursive: true, force: true, maxRetries: 10, retryDelay: 500 });
    } catch (error) {
      console.warn(`could not remove ${this.root}: ${(error as Error).message}`);
    }
  }
}

function procStatus(pid: number, field: string): number {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return Number.NaN; // the process is gone
  }
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return match ? Number(match[1]) * 1024 : Number.NaN;
}
