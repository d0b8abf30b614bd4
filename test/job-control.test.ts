import assert from 'node:assert/strict';
import { existsSync, openAsBlob } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { CLIENT_HEADER, type Job, type JobDetail, type Worker } from '../src/protocol/index.ts';
import { startTestFarm, submitBlend, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { makeTestScene } from '../testkit/scenes.ts';

describe('steering jobs and workers through the API (real Blender)', () => {
  let farm: TestFarm;
  let url: string;
  let scene: Blob;

  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${url}${path}`, {
      method,
      headers: { [CLIENT_HEADER]: 'test', ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: response.status, body: response.status === 204 ? null : await response.json() };
  };

  before(async () => {
    farm = await startTestFarm({ workers: 1, server: { frame_retries: 0 } });
    url = farm.server.httpUrl;
    scene = await openAsBlob(await makeTestScene({ frames: '1-4', width: 48, height: 32, samples: 2 }));
  });
  after(async () => farm?.close());

  it('holds a job after probing so its settings can be edited, then renders what was chosen', async () => {
    const { body: submitted } = await submitBlend(url, scene, { hold: 'true' });
    const held = await waitForJob(farm.server, submitted.id, ['paused']);
    assert.equal(held.scene?.frameEnd, 4);
    assert.equal(held.counts.total, 4);
    assert.equal(held.counts.rendering + held.counts.done, 0, 'a held job hands out no frames');

    const edited = await call('PATCH', `/api/jobs/${held.id}`, { frames: { start: 2, end: 3 }, samples: 1, name: 'shot 010', priority: 3 });
    assert.equal(edited.status, 200, JSON.stringify(edited.body));
    assert.deepEqual(edited.body.frames, { start: 2, end: 3, step: 1 });
    assert.equal(edited.body.counts.total, 2);
    assert.equal(edited.body.overrides.samples, 1);
    assert.equal(edited.body.name, 'shot 010');
    assert.equal(edited.body.priority, 3);

    const badEdit = await call('PATCH', `/api/jobs/${held.id}`, { frames: { start: 5, end: 1 } });
    assert.equal(badEdit.status, 400);
    const unknownField = await call('PATCH', `/api/jobs/${held.id}`, { colour: 'red' });
    assert.equal(unknownField.status, 400);

    assert.equal((await call('POST', `/api/jobs/${held.id}/resume`)).status, 200);
    const done = await waitForJob(farm.server, held.id, ['completed', 'failed']);
    assert.equal(done.state, 'completed', done.error ?? '');
    assert.equal(done.counts.done, 2);
    assert.ok(done.averageFrameMs !== null && done.averageFrameMs >= 0);
    assert.equal(done.etaMs, 0);

    const late = await call('PATCH', `/api/jobs/${held.id}`, { frames: { start: 1, end: 1 } });
    assert.equal(late.status, 409, 'render settings are fixed once frames were rendered');
    assert.equal((await call('POST', `/api/jobs/${held.id}/pause`)).status, 409);
  });

  it('serves a small WebP preview and the Blender log of each finished frame', async () => {
    const [job] = (await call('GET', '/api/jobs')).body as Job[];
    const response = await fetch(`${url}/api/jobs/${job!.id}/frames/2/preview`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'image/webp');
    const meta = await sharp(Buffer.from(await response.arrayBuffer())).metadata();
    assert.equal(meta.format, 'webp');
    assert.equal(meta.width, 48);
    const large = await fetch(`${url}/api/jobs/${job!.id}/frames/2/preview?size=huge`);
    assert.equal(large.status, 400);
    const log = (await call('GET', `/api/jobs/${job!.id}/frames/2/log`)).body;
    assert.match(log.log, /Fra:2 /, 'the log holds Blender\'s own progress lines');
    assert.equal(log.error, null);
    assert.equal((await fetch(`${url}/api/jobs/${job!.id}/frames/1/preview`)).status, 404, 'frame 1 was not rendered');
  });

  it('a scene that cannot render fails before its first frame with the preflight\'s reason and fix; with the fix it renders', async () => {
    // Cycles denoising on, and Debian's Blender has no OpenImageDenoise.
    const denoise = await openAsBlob(await makeTestScene({ frames: '1-2', width: 48, height: 32, samples: 2, denoise: true }));
    const { body } = await submitBlend(url, denoise);
    const failed = await waitForJob(farm.server, body.id, ['failed', 'completed']);
    assert.equal(failed.state, 'failed');
    assert.match(failed.error ?? '', /OpenImageDenoise.*denoising off/);
    const detail = (await call('GET', `/api/jobs/${body.id}`)).body as JobDetail;
    assert.deepEqual(detail.frameList, [], 'no frame was rendered, or even made');

    const retried = await call('POST', `/api/jobs/${body.id}/retry`);
    assert.equal(retried.status, 200);
    assert.equal(retried.body.state, 'probing', 'a job that failed its preflight is read again');
    assert.equal((await waitForJob(farm.server, body.id, ['failed', 'completed'])).state, 'failed');

    const fixed = await submitBlend(url, denoise, { denoising: 'false' });
    const rendered = await waitForJob(farm.server, fixed.body.id, ['failed', 'completed']);
    assert.equal(rendered.state, 'completed', rendered.error ?? '');
  });

  it('a disabled worker takes no frames until it is enabled again', async () => {
    const [worker] = (await call('GET', '/api/workers')).body as Worker[];
    const disabled = await call('POST', `/api/workers/${worker!.id}/disable`);
    assert.equal(disabled.body.enabled, false);
    const { body } = await submitBlend(url, scene, { frames: '1' });
    await new Promise((resolve) => setTimeout(resolve, 2500));
    assert.equal((await call('GET', `/api/jobs/${body.id}`)).body.state, 'probing', 'not even the scene probe was handed out');
    const enabled = await call('POST', `/api/workers/${worker!.id}/enable`);
    assert.equal(enabled.body.enabled, true);
    assert.equal((await waitForJob(farm.server, body.id, ['completed', 'failed'])).state, 'completed');
    assert.equal((await call('POST', `/api/workers/0123456789abcdef/drain`)).status, 404);
  });

  it('cancels a waiting job and deletes a job with its files', async () => {
    const [worker] = (await call('GET', '/api/workers')).body as Worker[];
    await call('POST', `/api/workers/${worker!.id}/drain`);
    const { body } = await submitBlend(url, scene);
    await waitForJob(farm.server, body.id, ['probing']);
    const cancelled = await call('POST', `/api/jobs/${body.id}/cancel`);
    assert.equal(cancelled.body.state, 'cancelled');
    assert.equal((await call('POST', `/api/jobs/${body.id}/cancel`)).status, 409);
    await call('POST', `/api/workers/${worker!.id}/enable`);

    const [first] = (await call('GET', '/api/jobs')).body as Job[];
    const jobDir = farm.server.dataDir.jobDir(first!.id);
    assert.ok(existsSync(jobDir));
    assert.equal((await call('DELETE', `/api/jobs/${first!.id}`)).status, 204);
    assert.equal(existsSync(jobDir), false);
    assert.equal((await call('GET', `/api/jobs/${first!.id}`)).status, 404);
    assert.equal((await call('DELETE', `/api/jobs/${first!.id}`)).status, 404);
  });
});
