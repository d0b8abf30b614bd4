import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { openAsBlob } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { FarmChange, Frame, JobDetail } from '../src/protocol/index.ts';
import { startTestFarm, submitBlend, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { BLENDER, assertPixelsEqual, decodeRgba, makeTestScene, type RgbaImage } from '../testkit/scenes.ts';

const run = promisify(execFile);
const WIDTH = 192;
const HEIGHT = 128;

/** Cycles places samples slightly differently in a border render (BLENDER-NOTES): compare by tolerance. */
function difference(a: RgbaImage, b: RgbaImage): { max: number; psnr: number } {
  assert.deepEqual([a.width, a.height], [b.width, b.height], 'sizes differ');
  let max = 0;
  let squares = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i]! - b.data[i]!);
    max = Math.max(max, d);
    squares += d * d;
  }
  const mse = squares / a.data.length;
  return { max, psnr: mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse) };
}

describe('tiles: one still split over several workers and stitched on the server (real Blender)', () => {
  let farm: TestFarm;
  let work: string;
  let still: string;
  const frameEvents: Frame[] = [];
  const record = (change: FarmChange) => {
    if (change.type === 'frame') frameEvents.push(change.frame);
  };

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'archenland-tiles-'));
    still = await makeTestScene({ frames: '1', width: WIDTH, height: HEIGHT, samples: 32, detail: true });
    farm = await startTestFarm({ workers: 2, server: { tail_duplicates: false } });
    farm.server.farm.on('event', record);
  });

  after(async () => {
    farm?.server.farm.off('event', record);
    await farm?.close();
  });

  async function render(scene: string, fields: Record<string, string>): Promise<JobDetail> {
    const submitted = await submitBlend(farm.server.httpUrl, await openAsBlob(scene), fields);
    assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    const finished = await waitForJob(farm.server, submitted.body.id, ['completed', 'failed', 'cancelled'], 180_000);
    assert.equal(finished.state, 'completed', `job ended ${finished.state}: ${finished.error}`);
    return (await (await fetch(`${farm.server.httpUrl}/api/jobs/${finished.id}`)).json()) as JobDetail;
  }

  async function served(job: JobDetail, frame: number, name: string): Promise<string> {
    const response = await fetch(`${farm.server.httpUrl}/api/jobs/${job.id}/frames/${frame}`);
    assert.equal(response.status, 200);
    const file = join(work, name);
    await writeFile(file, Buffer.from(await response.arrayBuffer()));
    return file;
  }

  async function wholeRender(scene: string, name: string, format = 'PNG', extension = 'png'): Promise<string> {
    await run(BLENDER, ['-b', scene, '-o', join(work, `${name}_####`), '-F', format, '-f', '1'], { timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
    return join(work, `${name}_0001.${extension}`);
  }

  it('renders a 2x2 grid on both workers and stitches a frame within 2/255 of a whole render', async (t) => {
    const tilePreviews: number[] = [];
    const fetchPreview = (change: FarmChange) => {
      if (change.type !== 'frame' || !change.frame.tiles || tilePreviews.length > 0) return;
      const done = change.frame.tiles.states.indexOf('done');
      if (done < 0 || change.frame.state === 'done') return;
      tilePreviews.push(-1);
      void fetch(`${farm.server.httpUrl}/api/jobs/${change.frame.jobId}/frames/1/tiles/${done}/preview`).then((r) => (tilePreviews[0] = r.status));
    };
    farm.server.farm.on('event', fetchPreview);
    const job = await render(still, { tiles: '2x2' });
    farm.server.farm.off('event', fetchPreview);

    assert.deepEqual(job.tiling, { requested: { cols: 2, rows: 2 }, forced: false, blockers: [] });
    const mine = frameEvents.filter((f) => f.jobId === job.id);
    const filling = mine.filter((f) => f.tiles && f.state !== 'done').map((f) => f.tiles!.states.filter((s) => s === 'done').length);
    assert.ok(filling.includes(1) && filling.includes(3), `the frame fills in tile by tile (done tiles seen: ${filling.join(',')})`);
    assert.equal(mine.at(-1)?.state, 'done');
    assert.equal(mine.at(-1)?.tiles, null, 'a stitched frame is a plain frame again');
    assert.equal(tilePreviews[0], 200, 'a finished tile has a preview while the other tiles render');

    const log = (await (await fetch(`${farm.server.httpUrl}/api/jobs/${job.id}/frames/1/log`)).json()) as { log: string };
    const tileWorkers = [...log.log.matchAll(/--- tile (\d) \(worker (worker\d)\) ---/g)];
    assert.deepEqual(tileWorkers.map((m) => m[1]).sort(), ['1', '2', '3', '4'], 'every tile logged once');
    assert.equal(new Set(tileWorkers.map((m) => m[2])).size, 2, 'both workers rendered tiles');

    const stitched = await decodeRgba(await served(job, 1, 'grid.png'));
    const whole = await decodeRgba(await wholeRender(still, 'whole'));
    assert.deepEqual([stitched.width, stitched.height], [WIDTH, HEIGHT]);
    const { max, psnr } = difference(stitched, whole);
    t.diagnostic(`2x2 tiles vs whole render: max difference ${max}/255, PSNR ${psnr.toFixed(1)} dB`);
    assert.ok(max <= 2, `largest difference ${max}/255`);
    assert.ok(psnr > 40, `PSNR ${psnr}`);
  });

  it('splits a still automatically when idle workers outnumber frames, and encodes its video', async (t) => {
    const streamed = farm.server.farm.videoStats().streamed;
    const job = await render(still, {});
    const split = frameEvents.find((f) => f.jobId === job.id && f.tiles);
    assert.deepEqual(split?.tiles?.grid, { cols: 2, rows: 1 }, 'two idle workers, one frame: two tiles side by side');
    const { max, psnr } = difference(await decodeRgba(await served(job, 1, 'auto.png')), await decodeRgba(await wholeRender(still, 'whole')));
    t.diagnostic(`auto split vs whole render: max difference ${max}/255, PSNR ${psnr.toFixed(1)} dB`);
    assert.ok(max <= 2);
    assert.equal(job.videoReady, true);
    assert.equal(farm.server.farm.videoStats().streamed, streamed + 1, 'the stitched frame went to the video stream');
  });

  it('keeps 16-bit PNG and OpenEXR output formats through the stitch', async () => {
    const deep = await makeTestScene({ frames: '1', width: WIDTH, height: HEIGHT, samples: 8, detail: true, colorDepth: 16 });
    const job16 = await render(deep, { tiles: '2' });
    const png16 = await served(job16, 1, 'deep.png');
    const { stdout } = await run('ffprobe', ['-v', 'error', '-show_entries', 'stream=width,height,pix_fmt', '-of', 'json', png16]);
    assert.deepEqual(JSON.parse(stdout).streams[0], { width: WIDTH, height: HEIGHT, pix_fmt: 'rgba64be' });

    const exrJob = await render(still, { tiles: '2x1', fileFormat: 'OPEN_EXR', samples: '8' });
    const exr = await served(exrJob, 1, 'still.exr');
    const probe = JSON.parse((await run('ffprobe', ['-v', 'error', '-show_entries', 'stream=width,height,codec_name', '-of', 'json', exr])).stdout);
    assert.deepEqual(probe.streams[0], { codec_name: 'exr', width: WIDTH, height: HEIGHT });
  });

  it('renders a scene with compositor glare whole, and says why; forcing tiles overrides that', async () => {
    const glare = await makeTestScene({ frames: '1', width: WIDTH, height: HEIGHT, samples: 8, glare: true });
    const job = await render(glare, { tiles: '2x2' });
    assert.match(job.tiling.blockers.join(' '), /Glare/);
    assert.equal(frameEvents.some((f) => f.jobId === job.id && f.tiles), false, 'never split');
    assertPixelsEqual(await decodeRgba(await served(job, 1, 'glare.png')), await decodeRgba(await wholeRender(glare, 'glare_whole')), 'glare frame');

    const forced = await render(glare, { tiles: '2x2', forceTiles: 'true' });
    assert.deepEqual(forced.tiling.blockers, []);
    assert.ok(frameEvents.some((f) => f.jobId === forced.id && f.tiles), 'split when forced');
  });

  it('refuses tile requests it cannot honour, with the reason', async () => {
    const bad = await submitBlend(farm.server.httpUrl, await openAsBlob(still), { tiles: '9x9' });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error, /at most 8x8/);
    const tooFine = await submitBlend(farm.server.httpUrl, await openAsBlob(still), { tiles: '8x8' });
    assert.equal(tooFine.status, 201);
    const failed = await waitForJob(farm.server, tooFine.body.id, ['failed', 'completed'], 60_000);
    assert.equal(failed.state, 'failed');
    assert.match(failed.error ?? '', /8x8 grid makes tiles smaller than 32 px on this 192x128 frame/);
  });

  it('hands the tiles of a worker that vanishes mid-render to another worker, and still completes the frame', async () => {
    const [first, second] = farm.workers;
    const submitted = await submitBlend(farm.server.httpUrl, await openAsBlob(still), { tiles: '2x2', samples: '16' });
    let stopped = false;
    const stopSecondMidTile = (change: FarmChange) => {
      if (stopped || change.type !== 'worker' || change.worker.name !== 'worker2') return;
      const current = change.worker.current;
      if (!current || current.jobId !== submitted.body.id || current.tile === undefined) return;
      stopped = true;
      void second!.shutdown();
    };
    farm.server.farm.on('event', stopSecondMidTile);
    const finished = await waitForJob(farm.server, submitted.body.id, ['completed', 'failed'], 180_000);
    farm.server.farm.off('event', stopSecondMidTile);
    assert.equal(stopped, true, 'worker2 was stopped while rendering a tile');
    assert.equal(finished.state, 'completed', finished.error ?? '');
    const log = (await (await fetch(`${farm.server.httpUrl}/api/jobs/${finished.id}/frames/1/log`)).json()) as { log: string };
    assert.equal([...log.log.matchAll(/--- tile (\d) /g)].length, 4, 'four tiles delivered, none twice');
    assert.ok(first);
  });
});
