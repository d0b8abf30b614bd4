/**
 * serve_limit_mbps: one limit on everything the server sends workers, shared by all their
 * downloads. The bucket's arithmetic alone, then a real server paced over real HTTP.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { mbpsToBytesPerSecond, TokenBucket } from '../src/edge/token-bucket.ts';
import { apiPath } from '../src/protocol/index.ts';
import { apiHeaders } from '../testkit/api.ts';
import { startTestFarm, type TestFarm } from '../testkit/farm.ts';

describe('the token bucket of serve_limit_mbps', () => {
  it('lets the burst through at once, then paces to the rate', () => {
    const bucket = new TokenBucket(1000, 500, 0); // 1000 B/s = 1 B/ms
    assert.equal(bucket.take(500, 0), 0, 'the burst is free');
    assert.equal(bucket.take(100, 0), 100, '100 bytes beyond it wait 100 ms');
    assert.equal(bucket.take(100, 0), 200, 'the next taker waits behind the first');
    assert.equal(bucket.take(100, 300), 0, 'after 300 ms the debt is paid and 100 bytes are free again');
  });

  it('shares one rate among many takers: n connections together get the rate, not n times it', () => {
    const chunk = 256 * 1024;
    const bucket = new TokenBucket(125_000_000, chunk, 0);
    let latest = 0;
    // 16 connections each sending 100 chunks, asking in turn at t = 0: the last may go only when all bytes fit the rate.
    for (let round = 0; round < 100; round++) for (let connection = 0; connection < 16; connection++) latest = bucket.take(chunk, 0);
    const expected = ((16 * 100 - 1) * chunk) / 125_000_000;
    assert.ok(Math.abs(latest / 1000 - expected) < 1e-9, `${latest / 1000} s vs ${expected} s`);
  });

  it('never stores more than the burst while idle, and ignores a clock read out of order', () => {
    const bucket = new TokenBucket(1000, 100, 0);
    assert.equal(bucket.take(100, 60_000), 0);
    assert.equal(bucket.take(50, 60_000), 50, 'a minute idle saved no more than the burst');
    assert.equal(bucket.take(10, 59_000), 60, 'an earlier reading adds no tokens');
  });

  it('reads megabits per second as network links are rated', () => {
    assert.equal(mbpsToBytesPerSecond(1000), 125_000_000);
    assert.throws(() => new TokenBucket(0, 1, 0), RangeError);
  });
});

describe('serve_limit_mbps on a real server', () => {
  let farm: TestFarm;
  const file = randomBytes(2 * 1024 * 1024);
  const sha = createHash('sha256').update(file).digest('hex');

  before(async () => {
    // 16 Mbit/s = 2 MB/s for all downloads together.
    farm = await startTestFarm({ server: { serve_limit_mbps: 16 } });
    const put = await fetch(`${farm.server.httpUrl}${apiPath('uploadProjectFile', { sha256: sha })}`, {
      method: 'PUT',
      headers: { ...apiHeaders(farm.server.tokens.user!), 'content-type': 'application/octet-stream' },
      body: new Uint8Array(file),
    });
    assert.equal(put.status, 201);
  });
  after(async () => {
    await farm?.close();
    rmSync(farm.root, { recursive: true, force: true });
  });

  it('two workers downloading at once share the limit: 4 MB at 2 MB/s take about 2 s, not 1 s each side by side', async () => {
    const download = async () => {
      const response = await fetch(`${farm.server.httpUrl}${apiPath('downloadProjectFile', { sha256: sha })}`, { headers: { authorization: `Bearer ${farm.server.tokens.worker!}` } });
      assert.equal(response.status, 200);
      const body = Buffer.from(await response.arrayBuffer());
      assert.equal(createHash('sha256').update(body).digest('hex'), sha, 'pacing changes no byte');
    };
    const metric = async () => Number(/^archenland_worker_download_bytes_total (\d+)/m.exec(await (await fetch(`${farm.server.httpUrl}/metrics`)).text())?.[1]);
    const before = await metric();
    const started = performance.now();
    await Promise.all([download(), download()]);
    const seconds = (performance.now() - started) / 1000;
    // 4 MiB less the 256 KiB burst at 2,000,000 B/s: 1.97 s. A limit per connection would take about 1 s.
    assert.ok(seconds >= 1.8, `took ${seconds.toFixed(2)} s: the limit is not shared`);
    assert.ok(seconds < 6, `took ${seconds.toFixed(2)} s`);
    assert.equal((await metric()) - before, 2 * file.length, 'every byte sent is counted');
  });
});
