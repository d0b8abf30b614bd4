import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { openAsBlob } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { CLIENT_HEADER, type Job } from '../src/protocol/index.ts';
import type { Farm } from '../src/server/index.ts';
import { startWebhookNotifier, type WebhookPayload } from '../src/edge/webhook.ts';
import { startTestFarm, submitBlend, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { makeTestScene } from '../testkit/scenes.ts';

interface Received {
  headers: IncomingMessage['headers'];
  url: string;
  body: WebhookPayload;
}

/** A local receiver: records every POST and answers with the next scripted status (200 when none is left). */
async function startReceiver(): Promise<{ server: Server; url: string; received: Received[]; statuses: number[]; next(): Promise<Received> }> {
  const received: Received[] = [];
  const statuses: number[] = [];
  const waiting: Array<(r: Received) => void> = [];
  const server = createServer((request, response) => {
    let text = '';
    request.setEncoding('utf8').on('data', (chunk) => (text += chunk));
    request.on('end', () => {
      const status = statuses.shift() ?? 200;
      response.writeHead(status).end();
      if (status !== 200) return;
      const entry = { headers: request.headers, url: request.url ?? '', body: JSON.parse(text) as WebhookPayload };
      received.push(entry);
      waiting.shift()?.(entry);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  let taken = 0;
  return {
    server,
    url: `http://127.0.0.1:${port}/hooks/farm?key=secret`,
    received,
    statuses,
    next: () =>
      new Promise<Received>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no webhook arrived within 60 s')), 60_000);
        const take = (r: Received) => {
          clearTimeout(timer);
          taken++;
          resolve(r);
        };
        if (received.length > taken) take(received[taken]!);
        else waiting.push(take);
      }),
  };
}

describe('webhooks for finished jobs (real Blender)', () => {
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let farm: TestFarm;
  let url: string;

  before(async () => {
    receiver = await startReceiver();
    farm = await startTestFarm({ workers: 1, server: { frame_retries: 0, webhook_url: receiver.url } });
    url = farm.server.httpUrl;
  });
  after(async () => {
    await farm?.close();
    receiver?.server.close();
  });

  it('POSTs job.completed with the job when a job completes, and only once', async () => {
    const scene = await openAsBlob(await makeTestScene({ frames: '1-2', width: 32, height: 24, samples: 2 }));
    const { body } = await submitBlend(url, scene);
    const delivery = await receiver.next();
    assert.equal(delivery.url, '/hooks/farm?key=secret');
    assert.match(String(delivery.headers['content-type']), /^application\/json/);
    assert.equal(delivery.headers['x-archenland-event'], 'job.completed');
    assert.equal(delivery.body.event, 'job.completed');
    assert.equal(delivery.body.job.id, body.id);
    assert.equal(delivery.body.job.state, 'completed');
    assert.equal(delivery.body.job.counts.done, 2);
    assert.equal(delivery.body.job.videoReady, true);

    // Renaming a finished job publishes it again; that is not a second completion.
    const renamed = await fetch(`${url}/api/jobs/${body.id}`, {
      method: 'PATCH',
      headers: { [CLIENT_HEADER]: 'test', 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'renamed' }),
    });
    assert.equal(renamed.status, 200);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(receiver.received.length, 1);
  });

  it('POSTs job.failed for a job whose frame Blender cannot render, retrying a receiver error', async () => {
    receiver.statuses.push(503); // the first attempt meets a busy receiver
    const denoise = await openAsBlob(await makeTestScene({ frames: '1-1', width: 32, height: 24, samples: 2, denoise: true }));
    const { body } = await submitBlend(url, denoise);
    const failed = await waitForJob(farm.server, body.id, ['failed', 'completed']);
    assert.equal(failed.state, 'failed');
    const delivery = await receiver.next();
    assert.equal(delivery.body.event, 'job.failed');
    assert.equal(delivery.body.job.id, body.id);
    assert.match(delivery.body.job.error ?? '', /OpenImageDenoise/);
    assert.equal(receiver.statuses.length, 0, 'the 503 was answered, then the retry delivered');
  });
});

describe('webhook delivery failures', () => {
  /** A farm stand-in: events in, background work counted. */
  function fakeFarm() {
    const pending: Promise<unknown>[] = [];
    const farm = Object.assign(new EventEmitter(), {
      listJobs: async () => [],
      background: (work: Promise<unknown>) => pending.push(work),
    });
    return { farm: farm as unknown as Farm, emitter: farm, settle: () => Promise.all(pending) };
  }
  function capturingLogger() {
    const lines: Array<Record<string, unknown>> = [];
    const stream = new Writable({
      write(chunk, _encoding, done) {
        lines.push(JSON.parse(String(chunk)));
        done();
      },
    });
    return { log: pino({ level: 'debug' }, stream), lines };
  }
  const job = (state: Job['state']) => ({ id: 'abcdef123456', state }) as Job;

  it('gives up after the retries on an unreachable receiver, logging it, without blocking the caller', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as { port: number };
    await new Promise((resolve) => closed.close(resolve));

    const { farm, emitter, settle } = fakeFarm();
    const { log, lines } = capturingLogger();
    startWebhookNotifier(farm, `http://user:pw@127.0.0.1:${port}/hook?token=x`, log, { timeoutMs: 500, retryDelaysMs: [20, 20] });
    const started = Date.now();
    emitter.emit('event', { type: 'job', job: job('rendering') });
    emitter.emit('event', { type: 'job', job: job('completed') });
    assert.ok(Date.now() - started < 50, 'emitting does not wait for the delivery');
    await settle();
    const retries = lines.filter((l) => l.msg === 'webhook delivery failed; retrying');
    assert.equal(retries.length, 2);
    const gaveUp = lines.find((l) => l.msg === 'webhook delivery failed; giving up');
    assert.ok(gaveUp, JSON.stringify(lines));
    assert.equal(gaveUp.attempts, 3);
    assert.equal(gaveUp.url, `http://127.0.0.1:${port}/hook`, 'credentials and query stay out of the logs');
    assert.match(String(gaveUp.problem), /ECONNREFUSED/);
  });

  it('sends credentials written in the URL as basic authentication', async () => {
    const receiver = await startReceiver();
    const { farm, emitter, settle } = fakeFarm();
    const withCredentials = receiver.url.replace('http://', 'http://farm:p%40ss@');
    startWebhookNotifier(farm, withCredentials, capturingLogger().log, { timeoutMs: 2000, retryDelaysMs: [] });
    emitter.emit('event', { type: 'job', job: job('completed') });
    await settle();
    const [delivery] = receiver.received;
    assert.equal(delivery?.headers.authorization, `Basic ${Buffer.from('farm:p@ss').toString('base64')}`);
    receiver.server.close();
  });

  it('stops waiting for a receiver that does not answer, and does not retry a 4xx', async () => {
    const sockets = new Set<import('node:net').Socket>();
    let hits = 0;
    const silent = createServer((request, response) => {
      hits++;
      if (request.url === '/gone') response.writeHead(410).end();
      // otherwise never answer
    });
    silent.on('connection', (s) => sockets.add(s));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as { port: number };

    const slow = fakeFarm();
    const slowLog = capturingLogger();
    startWebhookNotifier(slow.farm, `http://127.0.0.1:${port}/slow`, slowLog.log, { timeoutMs: 200, retryDelaysMs: [] });
    const started = Date.now();
    slow.emitter.emit('event', { type: 'job', job: job('failed') });
    await slow.settle();
    assert.ok(Date.now() - started < 3000);
    assert.match(String(slowLog.lines.find((l) => l.msg === 'webhook delivery failed; giving up')?.problem), /no answer within 200 ms/);

    const gone = fakeFarm();
    const goneLog = capturingLogger();
    startWebhookNotifier(gone.farm, `http://127.0.0.1:${port}/gone`, goneLog.log, { timeoutMs: 1000, retryDelaysMs: [10, 10] });
    gone.emitter.emit('event', { type: 'job', job: job('completed') });
    await gone.settle();
    assert.equal(hits, 2, 'one slow attempt, one 410 attempt');
    assert.ok(goneLog.lines.some((l) => l.msg === 'webhook refused by the receiver; not retrying' && l.status === 410));

    for (const s of sockets) s.destroy();
    silent.close();
  });
});
