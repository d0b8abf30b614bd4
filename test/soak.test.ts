import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, openAsBlob, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { CLIENT_HEADER, PROTOCOL_VERSION } from '../src/protocol/index.ts';
import { startTestFarm, submitBlend, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { BLENDER, assertPixelsEqual, decodeRgba, makeTestScene } from '../testkit/scenes.ts';

const run = promisify(execFile);

/** A small seeded generator, so a failing run can be replayed with the same seed. */
function random(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]) => items[int(items.length)]!;
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  return { next, int, pick, bytes };
}

const FRAMES = [1, 2, 3, 4, 5, 6, 7, 8];
const SEED = Number(process.env.ARCHENLAND_FUZZ_SEED ?? 20261125);

describe('soak: a job renders correctly while garbage is thrown at the server', () => {
  let farm: TestFarm;
  after(async () => farm?.close());

  it(`stays correct under ${'random'} malformed messages and uploads (seed ${SEED})`, async () => {
    farm = await startTestFarm({ workers: 2 });
    const url = farm.server.httpUrl;
    const scenePath = await makeTestScene({ frames: '1-8', width: 96, height: 72, samples: 8 });
    const { body: job } = await submitBlend(url, await openAsBlob(scenePath));
    const rnd = random(SEED);
    const tried = { ws: 0, http: 0, refused: 0 };
    const ids = [job.id, '0123456789abcdef', '../../etc/passwd', 'x'.repeat(300), '%00', 'ZZZ'];

    const wsJunk = (): string | Buffer =>
      rnd.pick([
        () => rnd.bytes(rnd.int(200)),
        () => '{"type":',
        () => JSON.stringify({ type: rnd.pick(['hello', 'ready', 'progress', 'frame_failed', 'nuke', 'observe']), protocol: rnd.pick([0, 1, 99, '1', null]) }),
        () => JSON.stringify({ type: 'hello', role: 'worker', protocol: PROTOCOL_VERSION, token: 'guess-guess-guess-guess', name: 'x', host: 'y', threads: 1, blenderVersion: null }),
        () => JSON.stringify({ type: 'progress', jobId: rnd.pick(ids), frame: rnd.pick([1, -1, 1e12, 'one']), percent: rnd.pick([50, 500, -1]) }),
        () => 'z'.repeat(rnd.pick([10, 1000, 300_000])),
      ])();

    const fuzzSocket = () =>
      new Promise<void>((resolve) => {
        const socket = new WebSocket(`ws://127.0.0.1:${farm.server.wsPort}`);
        const done = () => {
          socket.terminate();
          resolve();
        };
        socket.on('open', () => {
          // Some connections introduce themselves properly first, then misbehave.
          if (rnd.next() < 0.5) {
            socket.send(JSON.stringify({ type: 'hello', role: 'worker', protocol: PROTOCOL_VERSION, token: farm.server.tokens.worker!, name: `fuzz${tried.ws}`, host: 'fuzz', threads: 1, blenderVersion: null }));
          }
          for (let i = 0; i < 5; i++) {
            socket.send(wsJunk());
            tried.ws++;
          }
          setTimeout(done, 50);
        });
        socket.on('error', done);
        socket.on('close', done);
      });

    const fuzzHttp = async () => {
      tried.http++;
      const id = rnd.pick(ids);
      const request = rnd.pick([
        () => {
          const form = new FormData();
          form.append('file', new Blob([rnd.pick([rnd.bytes(100), Buffer.from('BLENDER-v304'), Buffer.alloc(0)])]), rnd.pick(['a.blend', '../../x', '']));
          form.append(rnd.pick(['frames', 'samples', 'bogus']), rnd.pick(['1-2', '-5', '9-1', 'x'.repeat(2000)]));
          return fetch(`${url}/api/jobs`, { method: 'POST', body: form, headers: { [CLIENT_HEADER]: 'fuzz' } });
        },
        () =>
          fetch(`${url}/api/worker/jobs/${encodeURIComponent(id)}/frames/${rnd.pick([1, 2, -9, 'x'])}`, {
            method: 'PUT',
            body: rnd.bytes(rnd.int(5000)),
            headers: { authorization: `Bearer ${rnd.pick([farm.server.tokens.worker!, 'nope'])}`, 'x-archenland-worker': rnd.pick(['abcdef123456', '../']), 'x-archenland-sha256': 'a'.repeat(64), 'x-archenland-render-ms': rnd.pick(['1', '-1', 'NaN']) },
          }),
        () => fetch(`${url}/api/jobs/${encodeURIComponent(id)}/${rnd.pick(['frames/1', 'video', 'frames.zip', 'frames/1/log', 'frames/1/preview?size=x'])}`),
        () => fetch(`${url}/api/worker/blends/${rnd.pick(['..%2F..%2Ffarm-token', 'a'.repeat(64), job.blendSha256])}`),
        () =>
          fetch(`${url}/api/jobs/${encodeURIComponent(id)}`, {
            method: 'PATCH',
            body: rnd.pick(['{', '{"frames":{"start":9,"end":1}}', '{"priority":"high"}', '[]', '{"name":""}']),
            headers: { 'content-type': 'application/json', [CLIENT_HEADER]: 'fuzz' },
          }),
        () => fetch(`${url}/api/${rnd.pick(['jobs/../../etc/passwd', 'workers/x/disable', 'login'])}`, { method: 'POST', body: '{"token":1}', headers: { 'content-type': 'application/json' } }),
      ])();
      const response = await request.catch(() => undefined);
      if (response) {
        await response.arrayBuffer().catch(() => undefined);
        if (response.status >= 400 && response.status < 500) tried.refused++;
        assert.ok(response.status < 500, `the server answered ${response.status}`);
      }
    };

    // Bounded: a fixed number of rounds, and never past the job's end.
    let finished = false;
    const ending = waitForJob(farm.server, job.id, ['completed', 'failed', 'cancelled']).finally(() => (finished = true));
    for (let round = 0; round < 120 && !finished; round++) {
      await Promise.all([fuzzSocket(), fuzzHttp(), fuzzHttp()]);
    }
    const final = await ending;
    assert.equal(final.state, 'completed', final.error ?? '');
    assert.deepEqual(final.counts, { total: 8, queued: 0, rendering: 0, done: 8, failed: 0 });
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
    const jobs = await (await fetch(`${url}/api/jobs`)).json();
    assert.equal(jobs.length, 1, 'no garbage upload became a job');

    const work = mkdtempSync(join(tmpdir(), 'archenland-soak-'));
    const args = ['-b', scenePath, '-o', join(work, 'ref_####'), '-F', 'PNG'];
    for (const f of FRAMES) args.push('-f', String(f));
    await run(BLENDER, args, { timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
    for (const f of FRAMES) {
      const served = join(work, `served_${f}.png`);
      writeFileSync(served, Buffer.from(await (await fetch(`${url}/api/jobs/${job.id}/frames/${f}`)).arrayBuffer()));
      assertPixelsEqual(await decodeRgba(served), await decodeRgba(join(work, `ref_${String(f).padStart(4, '0')}.png`)), `frame ${f}`);
    }
    console.log(`soak: ${tried.ws} WebSocket messages and ${tried.http} HTTP requests thrown (${tried.refused} refused with 4xx), 0 frames lost`);
    assert.ok(tried.ws + tried.http > 100, 'enough garbage was thrown');
  });
});
