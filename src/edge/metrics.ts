import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Farm } from '../farm/index.ts';
import { frameStates, jobStates, routeNamed, workerStates, type FarmChange } from '../protocol/index.ts';
import { on } from './routing.ts';
import { watchJobStates } from './webhook.ts';

/** Frame render times from a fraction of a second (previews) to hours (feature film frames). */
export const RENDER_SECONDS_BUCKETS = [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400];

const FRAME_UPLOAD_ROUTE = routeNamed('uploadFrame').path;

/**
 * Prometheus metrics for one farm, in a registry of its own (several farms may share a
 * process in tests). Counters and the render time histogram follow the farm's events;
 * job, frame and worker gauges are read from the farm on every scrape, so they are exact
 * after a restart too. Labels hold states only, never job names or ids.
 */
export function createFarmMetrics(farm: Farm, served?: { readonly bytesSent: number }) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const jobs = new Gauge({ name: 'archenland_jobs', help: 'Jobs by state', labelNames: ['state'], registers: [registry] });
  const frames = new Gauge({ name: 'archenland_frames', help: 'Frames of all jobs in the database, by state', labelNames: ['state'], registers: [registry] });
  const workers = new Gauge({
    name: 'archenland_workers',
    help: 'Known workers by state (idle, rendering, offline) and whether they take frames (enabled)',
    labelNames: ['state', 'enabled'],
    registers: [registry],
  });
  const asleep = new Gauge({
    name: 'archenland_workers_asleep',
    help: 'Connected workers outside the hours of their schedules (counted as idle in archenland_workers): they take no frames',
    registers: [registry],
  });
  const rendered = new Counter({ name: 'archenland_frames_rendered_total', help: 'Frames rendered and accepted since the server started', registers: [registry] });
  const failed = new Counter({ name: 'archenland_frames_failed_total', help: 'Frames that failed for good (all retries used) since the server started', registers: [registry] });
  const renderTime = new Histogram({
    name: 'archenland_frame_render_seconds',
    help: 'Render time of each accepted frame, as the worker measured it',
    buckets: RENDER_SECONDS_BUCKETS,
    registers: [registry],
  });
  const finished = new Counter({ name: 'archenland_jobs_finished_total', help: 'Jobs that ended since the server started, by end state', labelNames: ['state'], registers: [registry] });
  const uploaded = new Counter({
    name: 'archenland_upload_bytes_total',
    help: 'Bytes received: .blend files submitted (kind="blend") and workers\' result uploads, each a frame with its log and passes (kind="frame")',
    labelNames: ['kind'],
    registers: [registry],
  });
  if (served) {
    new Counter({
      name: 'archenland_worker_download_bytes_total',
      help: 'Bytes the server sent workers: .blend and project files (what serve_limit_mbps limits); peers send the rest',
      registers: [registry],
      // Read when scraped: the sending edge counts every chunk, the counter only reports it.
      collect() {
        this.reset();
        this.inc(served.bytesSent);
      },
    });
  }
  // Read from the farm at scrape time: it keeps the counts of the videos it made.
  new Counter({
    name: 'archenland_videos_total',
    help: 'Videos made since the server started: streamed while the job rendered (how="stream") or encoded from every frame once the last was in (how="batch")',
    labelNames: ['how'],
    registers: [registry],
    collect() {
      const { streamed, batch } = farm.videoStats();
      this.reset();
      this.inc({ how: 'stream' }, streamed);
      this.inc({ how: 'batch' }, batch);
    },
  });
  new Gauge({
    name: 'archenland_video_streams',
    help: 'Jobs whose video ffmpeg is encoding while they render (at most the setting video_streams)',
    registers: [registry],
    collect() {
      this.set(farm.videoStats().streaming);
    },
  });
  new Gauge({
    name: 'archenland_progress_interval_seconds',
    help: 'How often each worker reports render progress: it grows with the farm so that all reports stay within the setting progress_reports_per_second',
    registers: [registry],
    collect() {
      this.set(farm.progressIntervalMs / 1000);
    },
  });
  for (const state of ['completed', 'failed', 'cancelled']) finished.inc({ state }, 0);
  for (const kind of ['blend', 'frame']) uploaded.inc({ kind }, 0);

  // A frame's latest state may be published more than once (a progress report racing its
  // upload); a short memory of counted frames keeps each counted once.
  const counted = new Set<string>();
  const countOnce = (key: string) => {
    if (counted.has(key)) return false;
    counted.add(key);
    if (counted.size > 10_000) counted.delete(counted.values().next().value!);
    return true;
  };
  const failedNow = new Set<string>();
  const onFrame = (change: FarmChange) => {
    if (change.type !== 'frame') return;
    const { frame } = change;
    if (frame.state === 'done' && countOnce(`done:${frame.jobId}:${frame.number}:${frame.finishedAt}`)) {
      rendered.inc();
      if (frame.renderMs !== null) renderTime.observe(frame.renderMs / 1000);
    }
    // Failed for good: counted when a frame enters that state (a retried frame renders again first).
    const key = `${frame.jobId}:${frame.number}`;
    if (frame.state !== 'failed') failedNow.delete(key);
    else if (!failedNow.has(key)) {
      failedNow.add(key);
      if (failedNow.size > 10_000) failedNow.delete(failedNow.values().next().value!);
      failed.inc();
    }
  };
  farm.on('event', onFrame);
  const stopWatching = watchJobStates(farm, (job, previous) => {
    // A job is new when first seen while probing; its upload is the .blend.
    if (previous === undefined && job.state === 'probing') uploaded.inc({ kind: 'blend' }, job.blendSize);
    if (['completed', 'failed', 'cancelled'].includes(job.state)) finished.inc({ state: job.state });
  });

  return {
    registry,
    /** Counts a frame upload's bytes (the HTTP edge knows them, the farm does not). */
    frameBytes(bytes: number) {
      if (Number.isFinite(bytes) && bytes > 0) uploaded.inc({ kind: 'frame' }, bytes);
    },
    /** Reads the gauges from the farm, then renders every metric. */
    async scrape(): Promise<string> {
      const [jobList, workerList] = await Promise.all([farm.listJobs(), farm.listWorkers()]);
      jobs.reset();
      frames.reset();
      workers.reset();
      for (const state of jobStates) jobs.set({ state }, 0);
      for (const state of frameStates) frames.set({ state }, 0);
      for (const state of workerStates) for (const enabled of ['true', 'false']) workers.set({ state, enabled }, 0);
      for (const job of jobList) {
        jobs.inc({ state: job.state });
        for (const state of frameStates) frames.inc({ state }, job.counts[state]);
      }
      for (const worker of workerList) workers.inc({ state: worker.state, enabled: String(worker.enabled) });
      asleep.set(workerList.filter((worker) => worker.state !== 'offline' && worker.asleep !== null).length);
      return registry.metrics();
    },
    close() {
      farm.off('event', onFrame);
      stopWatching();
      registry.clear();
    },
  };
}

/**
 * `GET /metrics` (Prometheus text format, no token: it holds counts only) and
 * `GET /healthz` (200 `{ok, database}` when the database answers, else 503).
 */
export function registerMetrics(app: FastifyInstance<any, any, any, any, any>, farm: Farm, served?: { readonly bytesSent: number }): void {
  const metrics = createFarmMetrics(farm, served);
  app.addHook('onClose', async () => metrics.close());
  app.addHook('onResponse', async (request, reply) => {
    if (request.method !== 'PUT' || request.routeOptions.url !== FRAME_UPLOAD_ROUTE || reply.statusCode !== 200) return;
    metrics.frameBytes(Number(request.headers['content-length']));
  });

  on(app, 'metrics', async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.scrape()));

  on(app, 'health', async (request, reply) => {
    try {
      // One indexed read of a small table: proves SQLite answers without scanning jobs.
      await farm.listWorkers();
      return { ok: true, database: true };
    } catch (error) {
      request.log.error({ err: error }, 'health check: the database does not answer');
      return reply.status(503).send({ ok: false, database: false, error: (error as Error).message });
    }
  });
}
