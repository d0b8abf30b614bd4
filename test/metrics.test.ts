import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { openAsBlob, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DataDir, type Farm } from '../src/server/index.ts';
import { buildHttpApp } from '../src/edge/http.ts';
import { silentLogger } from '../src/util/log.ts';
import { startTestFarm, submitBlend, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { makeTestScene } from '../testkit/scenes.ts';
import { bareHttpOptions } from './helpers/http-app.ts';

interface Sample {
  value?: string;
  labels?: Record<string, string>;
  buckets?: Record<string, string>;
  count?: string;
  sum?: string;
}
interface Family {
  name: string;
  help: string;
  type: string;
  metrics: Sample[];
}
// The package ships no types; it is a plain CommonJS function.
const parsePrometheus = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => Family[];

describe('/metrics and /healthz (real Blender)', () => {
  let farm: TestFarm;
  let url: string;

  const scrape = async () => {
    const response = await fetch(`${url}/metrics`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const families = parsePrometheus(await response.text());
    const family = (name: string) => {
      const found = families.find((f) => f.name === name);
      assert.ok(found, `metric ${name} is exported`);
      return found;
    };
    const value = (name: string, labels: Record<string, string> = {}) => {
      const sample = family(name).metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
      assert.ok(sample, `${name}${JSON.stringify(labels)} is exported`);
      return Number(sample.value);
    };
    return { families, family, value };
  };

  before(async () => {
    farm = await startTestFarm({ workers: 1, server: { frame_retries: 0 }, worker: { allow_scripts: true } });
    url = farm.server.httpUrl;
  });
  after(async () => farm?.close());

  it('starts at zero, with every state present', async () => {
    const { value, family } = await scrape();
    assert.equal(value('archenland_frames_rendered_total'), 0);
    for (const state of ['probing', 'queued', 'paused', 'rendering', 'encoding', 'completed', 'failed', 'cancelled']) {
      assert.equal(value('archenland_jobs', { state }), 0, state);
    }
    assert.equal(family('archenland_frame_render_seconds').type, 'HISTOGRAM');
    assert.equal(value('archenland_videos_total', { how: 'stream' }), 0);
    assert.equal(value('archenland_videos_total', { how: 'batch' }), 0);
    assert.equal(value('archenland_video_streams'), 0);
    assert.equal(value('archenland_progress_interval_seconds'), 0.25, 'a small farm reports every 250 ms');
    assert.ok(family('process_resident_memory_bytes'), 'process metrics are included');
  });

  it('counts a real job: frames, render time histogram, jobs, workers and upload bytes', async () => {
    const sceneFile = await makeTestScene({ frames: '1-3', width: 32, height: 24, samples: 2 });
    const { body } = await submitBlend(url, await openAsBlob(sceneFile));
    const done = await waitForJob(farm.server, body.id, ['completed', 'failed']);
    assert.equal(done.state, 'completed', done.error ?? '');

    const { value, family } = await scrape();
    assert.equal(value('archenland_frames_rendered_total'), 3);
    const [histogram] = family('archenland_frame_render_seconds').metrics;
    assert.equal(Number(histogram!.count), 3);
    assert.equal(Number(histogram!.buckets!['+Inf']), 3);
    assert.ok(Number(histogram!.sum) > 0, 'render time was recorded');
    assert.equal(value('archenland_jobs', { state: 'completed' }), 1);
    assert.equal(value('archenland_jobs', { state: 'queued' }), 0);
    assert.equal(value('archenland_jobs_finished_total', { state: 'completed' }), 1);
    assert.equal(value('archenland_frames', { state: 'done' }), 3);
    // Blender's frames went to ffmpeg as they came: the video was streamed.
    assert.equal(value('archenland_videos_total', { how: 'stream' }), 1);
    assert.equal(value('archenland_videos_total', { how: 'batch' }), 0);
    assert.equal(value('archenland_video_streams'), 0);
    assert.equal(value('archenland_workers', { state: 'idle', enabled: 'true' }), 1);
    assert.equal(value('archenland_workers', { state: 'offline', enabled: 'true' }), 0);

    assert.equal(value('archenland_upload_bytes_total', { kind: 'blend' }), statSync(sceneFile).size);
    const framesDir = farm.server.dataDir.framesDir(body.id);
    const frameBytes = readdirSync(framesDir).reduce((sum, f) => sum + statSync(join(framesDir, f)).size, 0);
    // Each upload is the frame with its log (and passes): more than the frame files, less than one log more each.
    const received = value('archenland_upload_bytes_total', { kind: 'frame' });
    assert.ok(received > frameBytes && received < frameBytes + 3 * 70 * 1024, `${received} bytes for ${frameBytes} of frames`);
  });

  it('counts a frame Blender cannot render, and a disabled worker', async () => {
    // Its embedded Python kills Blender on frame 1: the preflight cannot see that coming.
    const crashing = await openAsBlob(await makeTestScene({ frames: '1-1', width: 32, height: 24, samples: 2, misbehave: 'crash:1' }));
    const { body } = await submitBlend(url, crashing, { allowScripts: 'true' });
    assert.equal((await waitForJob(farm.server, body.id, ['failed', 'completed'])).state, 'failed');
    const [worker] = await farm.server.farm.listWorkers();
    await farm.server.farm.setWorkerMode(worker!.id, 'disable');

    const { value } = await scrape();
    assert.equal(value('archenland_frames_failed_total'), 1);
    assert.equal(value('archenland_frames_rendered_total'), 3, 'unchanged');
    assert.equal(value('archenland_jobs', { state: 'failed' }), 1);
    assert.equal(value('archenland_jobs_finished_total', { state: 'failed' }), 1);
    assert.equal(value('archenland_workers', { state: 'idle', enabled: 'false' }), 1);
    assert.equal(value('archenland_workers', { state: 'idle', enabled: 'true' }), 0);
    await farm.server.farm.setWorkerMode(worker!.id, 'enable');
  });

  it('/healthz reports the database', async () => {
    const response = await fetch(`${url}/healthz`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { ok: true, database: true });
  });

  it('/healthz answers 503 when the database does not', async () => {
    const broken = Object.assign(new EventEmitter(), {
      listJobs: async () => [],
      listWorkers: async () => {
        throw new Error('the database connection has been closed');
      },
    }) as unknown as Farm;
    const app = buildHttpApp(broken, new DataDir(tmpdir()), await bareHttpOptions(), silentLogger);
    const response = await app.inject({ method: 'GET', url: '/healthz' });
    assert.equal(response.statusCode, 503);
    assert.deepEqual(response.json(), { ok: false, database: false, error: 'the database connection has been closed' });
    await app.close();
  });
});
