import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { CLIENT_HEADER, PROTOCOL_VERSION, UPLOAD_KEY_HEADER } from '../src/protocol/index.ts';
import { ScriptedWorker } from './helpers/scripted-worker.ts';
import { startTestFarm, submitBlend, type TestFarm } from '../testkit/farm.ts';

/** The smallest thing that passes the .blend checks (header, end marker): refusals below must come from elsewhere. */
const blendHeader = Buffer.concat([Buffer.from('BLENDER-v304'), Buffer.from('ENDB'), Buffer.alloc(20)]);

/** Opens a socket, sends one message and collects what the server says until it closes. */
function converse(port: number, first: unknown, then: unknown[] = []): Promise<{ messages: any[]; closeCode: number }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}`);
    const messages: any[] = [];
    const send = (m: unknown) => socket.send(typeof m === 'string' ? m : JSON.stringify(m));
    socket.on('open', () => send(first));
    socket.on('message', (data) => {
      messages.push(JSON.parse(data.toString()));
      if (messages.length > 1) return;
      // The rest follows the server's first answer; the server keeps a good conversation
      // open, so we end it once the server had time to answer everything.
      for (const m of then) send(m);
      setTimeout(() => socket.close(), 800);
    });
    socket.on('close', (code) => resolve({ messages, closeCode: code }));
    socket.on('error', reject);
  });
}

describe('bad input is refused with a clear error and leaves nothing behind', () => {
  let farm: TestFarm;
  let url: string;

  before(async () => {
    farm = await startTestFarm({ server: { max_upload_mb: 1 } });
    url = farm.server.httpUrl;
  });
  after(async () => farm?.close());

  const assertNothingStored = async () => {
    const jobs = await (await fetch(`${url}/api/jobs`)).json();
    assert.deepEqual(jobs, []);
    assert.deepEqual(readdirSync(farm.server.dataDir.tmp), [], 'no temp file left behind');
    assert.deepEqual(readdirSync(`${farm.server.dataDir.root}/blends`), []);
  };

  it('refuses a file that is not a .blend', async () => {
    const { status, body } = await submitBlend(url, new Blob(['\x89PNG\r\n\x1a\n not a blend']));
    assert.equal(status, 415);
    assert.match(body.error, /is not a Blender file/);
    await assertNothingStored();
  });

  it('refuses a .blend cut short (no end marker)', async () => {
    const truncated = Buffer.concat([Buffer.from('BLENDER-v304REND'), Buffer.alloc(5000, 1)]);
    const { status, body } = await submitBlend(url, new Blob([truncated]));
    assert.equal(status, 422);
    assert.match(body.error, /cut short/);
    await assertNothingStored();
  });

  it('refuses an empty file', async () => {
    const { status, body } = await submitBlend(url, new Blob([]));
    assert.equal(status, 400);
    assert.match(body.error, /empty/);
    await assertNothingStored();
  });

  it('refuses a file over the size limit', async () => {
    const big = Buffer.concat([blendHeader, Buffer.alloc(2 * 1024 * 1024)]);
    const { status, body } = await submitBlend(url, new Blob([big]));
    assert.equal(status, 413);
    assert.match(body.error, /larger than the limit of 1\.0 MiB/);
    await assertNothingStored();
  });

  it('refuses bad job options, naming the field', async () => {
    for (const [fields, pattern] of [
      [{ frames: '10-1' }, /ends before it starts/],
      [{ frames: 'all' }, /expected N, A-B or A-B:STEP/],
      [{ samples: '-4' }, /samples/],
      [{ resolutionPercentage: '5000' }, /resolutionPercentage/],
      [{ fileFormat: 'MP3' }, /fileFormat/],
      [{ bogus: '1' }, /unknown field "bogus"/],
      [{ blender: 'latest' }, /a Blender version like "4\.2"/],
    ] as const) {
      const { status, body } = await submitBlend(url, new Blob([blendHeader]), fields);
      assert.equal(status, 400, JSON.stringify(fields));
      assert.match(body.error, pattern);
    }
    await assertNothingStored();
  });

  it('refuses a request without a file or not in multipart form', async () => {
    const form = new FormData();
    form.append('frames', '1-2');
    let response = await fetch(`${url}/api/jobs`, { method: 'POST', body: form, headers: { [CLIENT_HEADER]: 'test' } });
    assert.equal(response.status, 400);
    assert.match((await response.json()).error, /no file/);
    response = await fetch(`${url}/api/jobs`, { method: 'POST', body: JSON.stringify({}), headers: { 'content-type': 'application/json', [CLIENT_HEADER]: 'test' } });
    assert.equal(response.status, 415);
    await assertNothingStored();
  });

  it('answers 404 for jobs, frames and files that do not exist, and 400 for malformed ids', async () => {
    for (const path of ['/api/jobs/0123456789abcdef', '/api/jobs/0123456789abcdef/frames', '/api/jobs/0123456789abcdef/frames/1', '/api/jobs/0123456789abcdef/video', '/api/nothing']) {
      const response = await fetch(`${url}${path}`);
      assert.equal(response.status, 404, path);
      assert.ok((await response.json()).error, path);
    }
    for (const path of ['/api/jobs/..%2F..%2Fetc/frames/1', '/api/jobs/..%2F..%2Fetc/frames', `/api/jobs/0123456789abcdef/frames?since=${'x'.repeat(101)}`]) {
      assert.equal((await fetch(`${url}${path}`)).status, 400, path);
    }
    // Adding files to a job: a body that names no project, and a project or job that does not exist.
    const put = (id: string, body: unknown) =>
      fetch(`${url}/api/jobs/${id}/project`, { method: 'PUT', body: JSON.stringify(body), headers: { 'content-type': 'application/json', [CLIENT_HEADER]: 'test' } });
    for (const body of [{}, { project: 'abc' }, { project: 'a'.repeat(64), extra: 1 }]) assert.equal((await put('0123456789abcdef', body)).status, 400, JSON.stringify(body));
    assert.equal((await put('0123456789abcdef', { project: 'a'.repeat(64) })).status, 404);
    const blend = await fetch(`${url}/api/worker/blends/..%2Ffarm-token`, { headers: { authorization: `Bearer ${farm.server.tokens.worker!}` } });
    assert.equal(blend.status, 400);
  });

  it('refuses worker endpoints without the farm token, and frames with a wrong checksum', async () => {
    const noToken = await fetch(`${url}/api/worker/blends/${'a'.repeat(64)}`);
    assert.equal(noToken.status, 401);
    const worker = await ScriptedWorker.connect(farm);
    const wrongSum = await worker.upload('/api/worker/jobs/0123456789abcdef/frames/1', Buffer.from('pixels'), {}, { manifest: { sha256: 'b'.repeat(64) } });
    assert.equal(wrongSum.status, 422);
    assert.match(wrongSum.body.error ?? '', /checksum mismatch/);
    const noKey = await worker.upload('/api/worker/jobs/0123456789abcdef/frames/1', Buffer.from('pixels'), { [UPLOAD_KEY_HEADER]: 'not-the-key-of-any-connection' });
    assert.equal(noKey.status, 503, 'an upload must come from an open worker connection');
    worker.close();
    assert.deepEqual(readdirSync(farm.server.dataDir.tmp), []);
  });

  it('refuses a wrong bearer token even from loopback, where no token is needed', async () => {
    const response = await fetch(`${url}/api/jobs`, { headers: { authorization: 'Bearer not-the-token' } });
    assert.equal(response.status, 401);
    const session = await (await fetch(`${url}/api/session`, { headers: { authorization: 'Bearer not-the-token' } })).json();
    assert.deepEqual(session, { authenticated: false });
  });

  it('refuses a worker with a wrong token or an older protocol', async () => {
    const hello = { type: 'hello', role: 'worker', protocol: PROTOCOL_VERSION, token: 'wrong-token-wrong-token', name: 'intruder', host: 'x', threads: 1, blenderVersion: null };
    const wrong = await converse(farm.server.wsPort, hello);
    assert.equal(wrong.closeCode, 1008);
    assert.deepEqual(wrong.messages, [{ type: 'error', message: 'wrong worker token' }]);

    const old = await converse(farm.server.wsPort, { ...hello, token: farm.server.tokens.worker!, protocol: 0 });
    assert.equal(old.closeCode, 1008);
    assert.match(old.messages[0].message, /protocol version 0 is not supported/);
    const workers = await (await fetch(`${url}/api/workers`)).json();
    assert.deepEqual(workers.filter((w: { name: string }) => w.name === 'intruder'), [], 'a refused worker is never registered');
  });

  it('answers malformed and unknown messages with an error, without acting on them', async () => {
    const garbage = await converse(farm.server.wsPort, '{not json');
    assert.match(garbage.messages[0].message, /not valid JSON/);
    assert.equal(garbage.closeCode, 1008);

    const hello = { type: 'hello', role: 'worker', protocol: PROTOCOL_VERSION, token: farm.server.tokens.worker!, name: 'w', host: 'h', threads: 1, blenderVersion: null };
    const session = await converse(farm.server.wsPort, hello, [
      { type: 'launch_missiles' },
      { type: 'progress', jobId: '../../etc', frame: 1, percent: 10 },
      'x'.repeat(300 * 1024),
    ]);
    // Its tags' schedules come before the welcome, so it never asks for a frame it may not take.
    assert.deepEqual(session.messages.slice(0, 2).map((m) => m.type), ['tag_schedules', 'welcome']);
    const errors = session.messages.filter((m) => m.type === 'error').map((m) => m.message);
    assert.equal(errors.length, 2, JSON.stringify(session.messages));
    assert.match(errors[0], /invalid message/);
    assert.match(errors[1], /jobId/);
    assert.equal(session.closeCode, 1009, 'an oversized message closes the connection (1009: message too big)');
  });

  it('refuses state changes without the client header unless a token is presented (CSRF)', async () => {
    const form = new FormData();
    form.append('file', new Blob([blendHeader]), 'scene.blend');
    const forged = await fetch(`${url}/api/jobs`, { method: 'POST', body: form });
    assert.equal(forged.status, 403);
    assert.match((await forged.json()).error, /x-archenland-client/);
    const cancel = await fetch(`${url}/api/jobs/0123456789abcdef/cancel`, { method: 'POST' });
    assert.equal(cancel.status, 403);
    const withToken = await fetch(`${url}/api/jobs/0123456789abcdef/cancel`, { method: 'POST', headers: { authorization: `Bearer ${farm.server.tokens.user!}` } });
    assert.equal(withToken.status, 404, 'a bearer token cannot be forged by another site, so no header is needed');
    await assertNothingStored();
  });

  it('refuses a WebSocket observer opened by a page from another site', async () => {
    const socket = new WebSocket(`ws://127.0.0.1:${farm.server.wsPort}`, { headers: { origin: 'http://evil.example' } });
    const messages: any[] = [];
    socket.on('open', () => socket.send(JSON.stringify({ type: 'observe', protocol: PROTOCOL_VERSION })));
    socket.on('message', (d) => messages.push(JSON.parse(d.toString())));
    const code = await new Promise((resolve) => socket.on('close', resolve));
    assert.equal(code, 1008);
    assert.match(messages[0].message, /other sites/);
  });

  it('requires the token from remote callers when loopback is not trusted', async () => {
    const strict = await startTestFarm({ server: { trust_loopback: false } });
    try {
      const anonymous = await fetch(`${strict.server.httpUrl}/api/jobs`);
      assert.equal(anonymous.status, 401);
      const withToken = await fetch(`${strict.server.httpUrl}/api/jobs`, { headers: { authorization: `Bearer ${strict.server.tokens.user!}` } });
      assert.equal(withToken.status, 200);
      const observer = await converse(strict.server.wsPort, { type: 'observe', protocol: PROTOCOL_VERSION });
      assert.match(observer.messages[0].message, /wrong or missing access token/);
      // A browser logs in once with the token and then holds a session cookie.
      const badLogin = await fetch(`${strict.server.httpUrl}/api/login`, { method: 'POST', body: JSON.stringify({ token: 'guess' }), headers: { 'content-type': 'application/json' } });
      assert.equal(badLogin.status, 401);
      const login = await fetch(`${strict.server.httpUrl}/api/login`, { method: 'POST', body: JSON.stringify({ token: strict.server.tokens.user! }), headers: { 'content-type': 'application/json' } });
      assert.equal(login.status, 200);
      const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
      assert.doesNotMatch(cookie, new RegExp(strict.server.tokens.user!), 'the cookie is not the token itself');
      const withCookie = await fetch(`${strict.server.httpUrl}/api/jobs`, { headers: { cookie } });
      assert.equal(withCookie.status, 200);
      const session = await (await fetch(`${strict.server.httpUrl}/api/session`, { headers: { cookie } })).json();
      assert.deepEqual(session, { authenticated: true });
    } finally {
      await strict.close();
    }
  });
});
