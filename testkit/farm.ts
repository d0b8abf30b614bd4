import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { silentLogger, createLogger } from '../src/util/log.ts';
import { startServer, type RunningServer } from '../src/server/index.ts';
import { RenderWorker } from '../src/worker/index.ts';
import { serverSchema, workerSchema, type ServerSettings, type WorkerSettings } from '../src/config/index.ts';
import { CLIENT_HEADER, type Job } from '../src/protocol/index.ts';
import { BLENDER } from './scenes.ts';

/** Logs stay quiet in tests unless ARCHENLAND_TEST_LOGS=1. */
const testLogger = (name: string) => (process.env.ARCHENLAND_TEST_LOGS ? createLogger(name, 'debug') : silentLogger);

export interface TestFarm {
  server: RunningServer;
  workers: RenderWorker[];
  root: string;
  /** `clock`: the time the worker reads its schedule at. */
  addWorker(name?: string, settings?: Partial<WorkerSettings>, clock?: () => Date): RenderWorker;
  close(): Promise<void>;
}

/** A real server on free loopback ports with real workers (real Blender) in this process. */
export async function startTestFarm(
  opts: { workers?: number; server?: Partial<ServerSettings>; worker?: Partial<WorkerSettings> } = {},
): Promise<TestFarm> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'archenland-farm-'));
  const settings: ServerSettings = {
    ...serverSchema.parse({}),
    bind: '127.0.0.1',
    port: 0,
    web_port: 0,
    data_dir: path.join(root, 'server'),
    log_level: 'silent',
    ...opts.server,
  } as ServerSettings;
  const server = await startServer(settings, testLogger('server'));
  const workers: RenderWorker[] = [];
  const addWorker = (name = `worker${workers.length + 1}`, overrides: Partial<WorkerSettings> = {}, clock?: () => Date) => {
    const worker = new RenderWorker(
      {
        ...workerSchema.parse({}),
        blender_path: BLENDER,
        threads: 1,
        address: '127.0.0.1',
        port: server.wsPort,
        web_port: server.httpPort,
        name,
        cache_dir: path.join(root, name),
        token: server.tokens.worker!,
        ...opts.worker,
        ...overrides,
      },
      testLogger(name),
      clock,
    );
    void worker.run();
    workers.push(worker);
    return worker;
  };
  for (let i = 0; i < (opts.workers ?? 0); i++) addWorker();
  const farm: TestFarm = {
    server,
    workers,
    root,
    addWorker,
    async close() {
      await Promise.all(workers.map((w) => w.shutdown()));
      await farm.server.close(); // a test may have replaced the server with a restarted one
    },
  };
  return farm;
}

/** Uploads a file through the real HTTP API, as the web UI and CLI do. */
export async function submitBlend(
  baseUrl: string,
  file: Blob,
  fields: Record<string, string> = {},
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any }> {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  form.append('file', file, 'scene.blend');
  const response = await fetch(`${baseUrl}/api/jobs`, { method: 'POST', body: form, headers: { [CLIENT_HEADER]: 'test', ...headers } });
  return { status: response.status, body: await response.json() };
}

/** Waits for the farm to report the job in one of the given states, via its own events. */
export function waitForJob(server: RunningServer, jobId: string, states: string[], timeoutMs = 120_000): Promise<Job> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      server.farm.off('event', listener);
      reject(new Error(`job ${jobId} did not reach ${states.join('/')} within ${timeoutMs} ms`));
    }, timeoutMs);
    const listener = (event: { type: string; job?: Job }) => {
      if (event.type === 'job' && event.job?.id === jobId && states.includes(event.job.state)) {
        clearTimeout(timer);
        server.farm.off('event', listener);
        resolve(event.job);
      }
    };
    server.farm.on('event', listener);
    void server.farm.getJob(jobId).then((job) => {
      if (states.includes(job.state)) listener({ type: 'job', job });
    });
  });
}
