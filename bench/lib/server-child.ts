/**
 * Entry point of a server run as a child process by bench/lib/server-process.ts, so its
 * memory can be read cleanly (/proc/PID/status) and its CPU is its own. Settings come as
 * JSON in ARCHENLAND_BENCH_SERVER; the parent talks to it over the IPC channel:
 *   child -> parent: {type:'ready', …ports}, {type:'job', job, at} on each job state change,
 *                    {type:'stats', id, …} in answer to a stats request
 *   parent -> child: {type:'stats', id, resetLoop?, gc?}, {type:'stop'}
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { serverSchema, type ServerSettings } from '../../src/config/index.ts';
import type { Job } from '../../src/protocol/index.ts';
import { startServer } from '../../src/server/index.ts';
import { createLogger, silentLogger } from '../../src/util/log.ts';

/** What the farm service emits on 'event'; only job changes are read here. */
type FarmChangeLike = { type: string; job?: Job };

/**
 * With ARCHENLAND_BENCH_COUNT_SQL=1, every statement the store runs is counted by its SQL
 * text, for a per-frame query census in the stats. The store prepares each SQL text once,
 * so the count hooks the statements' run/get/all/iterate rather than prepare.
 */
const sqlCounts = new Map<string, number>();
if (process.env.ARCHENLAND_BENCH_COUNT_SQL) {
  const { default: SQLite } = await import('better-sqlite3');
  const database = SQLite.prototype as unknown as { prepare(sql: string): object };
  const prepare = database.prepare;
  let hooked = false;
  database.prepare = function (this: unknown, sql: string) {
    const statement = prepare.call(this, sql);
    if (!hooked) {
      hooked = true;
      const methods = Object.getPrototypeOf(statement) as Record<string, (...args: unknown[]) => unknown>;
      for (const name of ['run', 'get', 'all', 'iterate']) {
        const original = methods[name]!;
        methods[name] = function (this: { source: string }, ...args: unknown[]) {
          sqlCounts.set(this.source, (sqlCounts.get(this.source) ?? 0) + 1);
          return original.apply(this, args);
        };
      }
    }
    return statement;
  };
}

const send = (message: unknown) => process.send?.(message);

const settings = { ...serverSchema.parse({}), ...JSON.parse(process.env.ARCHENLAND_BENCH_SERVER ?? '{}') } as ServerSettings;
const log = process.env.ARCHENLAND_BENCH_LOGS ? createLogger('bench-server', 'info') : silentLogger;
const server = await startServer(settings, log);

const loop = monitorEventLoopDelay({ resolution: 10 });
loop.enable();
const events: Record<string, number> = {};
const lastState = new Map<string, string>();
server.farm.on('event', (event: FarmChangeLike) => {
  events[event.type] = (events[event.type] ?? 0) + 1;
  const job = event.type === 'job' ? event.job : undefined;
  if (!job) return;
  if (lastState.get(job.id) === job.state) return;
  lastState.set(job.id, job.state);
  send({ type: 'job', at: Date.now(), job: { id: job.id, state: job.state, counts: job.counts, error: job.error } });
});

process.on('message', (message: { type: string; id?: number; resetLoop?: boolean; gc?: boolean }) => {
  if (message.type === 'stats') {
    // A full collection first (only when asked: it pauses the server) makes heap figures comparable.
    const gc = (globalThis as { gc?: () => void }).gc;
    if (message.gc && gc) gc();
    send({
      type: 'stats',
      id: message.id,
      memory: process.memoryUsage(),
      cpu: process.cpuUsage(),
      loop: { p50: loop.percentile(50) / 1e6, p99: loop.percentile(99) / 1e6, max: loop.max / 1e6, mean: loop.mean / 1e6 },
      events: { ...events },
      sql: Object.fromEntries(sqlCounts),
    });
    if (message.resetLoop) loop.reset();
  } else if (message.type === 'stop') {
    void server
      .close()
      .catch(() => undefined)
      .finally(() => process.exit(0));
  }
});
// The parent died or let go: do not linger.
process.on('disconnect', () => process.exit(0));

send({
  type: 'ready',
  pid: process.pid,
  httpUrl: server.httpUrl,
  httpPort: server.httpPort,
  wsPort: server.wsPort,
  token: server.tokens.user,
  workerToken: server.tokens.worker,
  dataDir: server.dataDir.root,
});
