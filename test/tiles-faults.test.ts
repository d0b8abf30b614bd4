/**
 * Tiles that go wrong, against a real server, with a scripted worker speaking the real
 * protocol (no Blender needed): a tile of the wrong size fails the stitch, results aimed at
 * tiles that do not exist are refused, and malformed tile messages get a clear error.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import type { Job, RenderAssignment } from '../src/protocol/index.ts';
import { fakeBlend, submitJob } from '../testkit/api.ts';
import { startTestFarm, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { ScriptedWorker } from './helpers/scripted-worker.ts';

const png = (width: number, height: number) =>
  sharp({ create: { width, height, channels: 3, background: { r: 200, g: 60, b: 20 } } }).png().toBuffer();

describe('tiles that go wrong (scripted worker, real server)', () => {
  let farm: TestFarm;
  let worker: ScriptedWorker;

  before(async () => {
    farm = await startTestFarm({ server: { frame_retries: 0 } });
    worker = await ScriptedWorker.connect(farm);
  });

  after(async () => {
    worker?.close();
    await farm?.close();
  });

  it('fails the frame with the reason when a tile has the wrong size, and refuses results for tiles that do not exist', async () => {
    const job = await submitJob(farm.server.httpUrl, farm.server.tokens.user!, fakeBlend(), { tiles: '2x1' });
    await worker.next('probe');
    worker.send({ type: 'ready' });
    const first = (await worker.next('render')) as RenderAssignment;
    assert.deepEqual(first.tile, { index: 0, cols: 2, rows: 1, x: 0, y: 0, width: 100, height: 100, frameWidth: 200, frameHeight: 100 });
    const base = `/api/worker/jobs/${job.id}/frames/1`;

    const whole = await worker.upload(base, await png(200, 100));
    assert.deepEqual(whole.body, { accepted: false, reason: 'frame 1 is split into tiles' }, 'a whole frame for a split frame is not taken');
    const missing = await worker.upload(`${base}/tiles/5`, await png(100, 100));
    assert.match(missing.body.reason ?? '', /not split into that tile/);
    const outOfRange = await worker.upload(`${base}/tiles/99`, await png(100, 100));
    assert.equal(outOfRange.status, 400);

    assert.deepEqual((await worker.upload(`${base}/tiles/0`, await png(100, 100))).body, { accepted: true });
    assert.match((await worker.upload(`${base}/tiles/0`, await png(100, 100))).body.reason ?? '', /tile already done/);
    worker.send({ type: 'ready' });
    const second = (await worker.next('render', 1)) as RenderAssignment;
    assert.equal(second.tile?.index, 1);
    assert.deepEqual((await worker.upload(`${base}/tiles/1`, await png(90, 100))).body, { accepted: true });

    const failed = await waitForJob(farm.server, job.id, ['failed', 'completed'], 20_000);
    assert.equal(failed.state, 'failed');
    assert.match(failed.error ?? '', /the tiles could not be stitched: tile 1 \(100x100 at 100,0, .*\) is 90x100, expected 100x100/);
  });

  it('lets a held job change its tiles before any frame is out, refusing a grid too fine for the frame', async () => {
    const job = await submitJob(farm.server.httpUrl, farm.server.tokens.user!, fakeBlend(), { hold: 'true' });
    await waitForJob(farm.server, job.id, ['paused'], 10_000);
    const patch = (body: unknown) =>
      fetch(`${farm.server.httpUrl}/api/jobs/${job.id}`, { method: 'PATCH', body: JSON.stringify(body), headers: { 'content-type': 'application/json', 'x-archenland-client': 'test' } });
    const tooFine = await patch({ tiles: { cols: 8, rows: 1 } });
    assert.equal(tooFine.status, 400);
    assert.match(((await tooFine.json()) as { error: string }).error, /8x1 grid makes tiles smaller than 32 px on this 200x100 frame/);
    const edited = await patch({ tiles: { cols: 2, rows: 2 }, forceTiles: true });
    assert.equal(edited.status, 200);
    assert.deepEqual(((await edited.json()) as Job).tiling, { requested: { cols: 2, rows: 2 }, forced: true, blockers: [] });
  });

  it('answers a tile message out of range with a clear error and keeps the connection', async () => {
    const errorsBefore = worker.received.filter((m) => m.type === 'error').length;
    worker.send({ type: 'progress', jobId: 'abcdef12', frame: 1, tile: 64, percent: 10 });
    const error = await worker.next('error', errorsBefore);
    assert.match(error.message, /tile/);
    worker.send({ type: 'ready' });
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal((await (await fetch(`${farm.server.httpUrl}/api/workers`)).json())[0].state, 'idle');
  });

  it('answers 404, not 500, for a tile preview whose tiles were stitched and removed while it was made', async () => {
    const probes = worker.received.filter((m) => m.type === 'probe').length;
    const renders = worker.received.filter((m) => m.type === 'render').length;
    const job = await submitJob(farm.server.httpUrl, farm.server.tokens.user!, fakeBlend(), { tiles: '2x1' });
    await worker.next('probe', probes);
    worker.send({ type: 'ready' });
    const assignment = (await worker.next('render', renders)) as RenderAssignment;
    assert.equal(assignment.tile?.index, 0);
    assert.deepEqual((await worker.upload(`/api/worker/jobs/${job.id}/frames/1/tiles/0`, await png(100, 100))).body, { accepted: true });
    const preview = `${farm.server.httpUrl}/api/jobs/${job.id}/frames/1/tiles/0/preview`;
    assert.equal((await fetch(`${preview}?size=large`)).status, 200, 'a done tile has its preview');

    // What stitching does to the tile's folder, at the moment a page asks for another preview of it.
    await rm(farm.server.dataDir.frameTilesDir(job.id, 1), { recursive: true });
    const gone = await fetch(`${preview}?size=small`);
    assert.equal(gone.status, 404);
    assert.equal(((await gone.json()) as { code: string }).code, 'TILE_NOT_FOUND');
    const cached = await fetch(`${preview}?size=large`);
    assert.equal(cached.status, 404, 'nor a preview made before, removed with its tile');
    await fetch(`${farm.server.httpUrl}/api/jobs/${job.id}/cancel`, { method: 'POST', headers: { 'x-archenland-client': 'test' } });
  });
});
