/**
 * One worker without Blender in a process of its own (testkit/file-worker.ts: the real
 * connection, caches, fetcher and peer server), for bench/peer-transfer.ts. Options come
 * as JSON in ARCHENLAND_BENCH_FILE_WORKER; the parent talks to it over the IPC channel:
 *   child -> parent: {type:'ready', workerId, peerPort}, {type:'done', ms, stats} | {type:'failed', error}, {type:'cpu', ms}
 *   parent -> child: {type:'prepare', project, blend}, {type:'cpu'} (CPU time used so far), {type:'stop'}
 */
import { performance } from 'node:perf_hooks';
import type { BlendRef, ProjectRef } from '../../src/protocol/index.ts';
import { createLogger, silentLogger } from '../../src/util/log.ts';
import { FileWorker, type FileWorkerOptions } from '../../testkit/file-worker.ts';

const options = JSON.parse(process.env.ARCHENLAND_BENCH_FILE_WORKER ?? '{}') as FileWorkerOptions;
const log = process.env.ARCHENLAND_BENCH_LOGS ? createLogger(options.name, 'info') : silentLogger;
const worker = await FileWorker.start({ ...options, log });
const send = (message: unknown) => process.send?.(message);

process.on('message', (message: { type: string; project?: ProjectRef; blend?: BlendRef }) => {
  if (message.type === 'prepare') {
    const started = performance.now();
    // Done when it holds the project; its CPU is read a moment later, so uploads to peers still under way count too.
    worker
      .prepare(message.project!, message.blend!)
      .then(() => send({ type: 'done', ms: performance.now() - started, stats: worker.files.fetcher.stats }))
      .catch((error: Error) => send({ type: 'failed', error: error.stack ?? error.message }));
  } else if (message.type === 'cpu') {
    const { user, system } = process.cpuUsage();
    send({ type: 'cpu', ms: (user + system) / 1000 });
  } else if (message.type === 'stop') {
    void worker.stop().finally(() => process.exit(0));
  }
});
// The parent died or let go: do not linger (an orphan is adopted by another process).
process.on('disconnect', () => process.exit(0));
const parent = process.ppid;
setInterval(() => process.ppid !== parent && process.exit(0), 1000).unref();
send({ type: 'ready', workerId: worker.workerId, peerPort: worker.files.peerPort ?? null });
