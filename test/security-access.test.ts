/**
 * Who may do what: user and worker tokens, browser sessions, loopback trust and the names
 * a browser may use for the server, as a stranger, a hostile web page, a worker and a
 * user would try them against a real server.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, statSync } from 'node:fs';
import http from 'node:http';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import SQLite from 'better-sqlite3';
import { pino } from 'pino';
import WebSocket from 'ws';
import { serverSchema, type ServerSettings } from '../src/config/index.ts';
import { PROTOCOL_VERSION } from '../src/protocol/index.ts';
import { Credentials, SESSION_LIFETIME_MS } from '../src/edge/credentials.ts';
import { startServer } from '../src/server/index.ts';
import { MAX_UNIDENTIFIED_CONNECTIONS } from '../src/edge/worker-socket.ts';
import { Store } from '../src/store/index.ts';
import { startTestFarm, type TestFarm } from '../testkit/farm.ts';
import { ScriptedWorker } from './helpers/scripted-worker.ts';
import os from 'node:os';
import path from 'node:path';

type Answer = { status: number; headers: http.IncomingHttpHeaders; body: string };

/** An HTTP request with exactly these headers (fetch would set Host and Origin itself). */
function request(port: number, method: string, target: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: target, headers: { host: `127.0.0.1:${port}`, ...headers } }, (response) => {
      let text = '';
      response.setEncoding('utf8').on('data', (chunk) => (text += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const json = { 'content-type': 'application/json' };

describe('loopback trust and the names of the server (DNS rebinding, proxies)', () => {
  let farm: TestFarm;
  let port: number;
  before(async () => {
    farm = await startTestFarm({ server: { trust_loopback: true, public_hosts: ['farm.example'] } });
    port = farm.server.httpPort;
  });
  after(async () => farm?.close());

  it('trusts a local caller that names this machine', async () => {
    assert.equal((await request(port, 'GET', '/api/jobs')).status, 200);
    assert.equal((await request(port, 'GET', '/api/jobs', { host: `localhost:${port}` })).status, 200);
  });

  it('refuses a page that re-pointed its own DNS name at this machine', async () => {
    for (const target of ['/api/jobs', '/', '/api/session']) {
      const answer = await request(port, 'GET', target, { host: `evil.example:${port}` });
      assert.equal(answer.status, 421, target);
      assert.match(answer.body, /does not answer to the name .*evil\.example/);
    }
  });

  it('gives no loopback trust through a proxy on this machine', async () => {
    for (const header of ['forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-real-ip']) {
      const answer = await request(port, 'GET', '/api/jobs', { [header]: 'for=203.0.113.9' });
      assert.equal(answer.status, 401, header);
    }
  });

  it('answers to public_hosts, but trusts only loopback names', async () => {
    const page = await request(port, 'GET', '/api/session', { host: 'farm.example' });
    assert.equal(page.status, 200);
    assert.deepEqual(JSON.parse(page.body), { authenticated: false });
    assert.equal((await request(port, 'GET', '/api/jobs', { host: 'farm.example' })).status, 401);
    const withToken = await request(port, 'GET', '/api/jobs', { host: 'farm.example', authorization: `Bearer ${farm.server.tokens.user}` });
    assert.equal(withToken.status, 200);
  });

  it('refuses state changes from another site: the client header and a matching Origin are needed', async () => {
    const target = '/api/jobs/0123456789abcdef/cancel';
    assert.equal((await request(port, 'POST', target)).status, 403, 'no client header');
    const crossSite = await request(port, 'POST', target, { 'x-archenland-client': 'web', origin: 'http://evil.example' });
    assert.equal(crossSite.status, 403);
    assert.match(crossSite.body, /other sites/);
    assert.equal((await request(port, 'POST', target, { 'x-archenland-client': 'web', origin: 'null' })).status, 403);
    assert.equal((await request(port, 'POST', target, { 'x-archenland-client': 'web', origin: `http://127.0.0.1:${port}` })).status, 404, 'our own page');
  });

  it('sends a Content-Security-Policy that forbids framing with the web UI', async () => {
    const page = await request(port, 'GET', '/');
    assert.equal(page.status, 200);
    const policy = String(page.headers['content-security-policy']);
    assert.match(policy, /frame-ancestors 'none'/);
    assert.match(policy, /script-src 'self' 'sha256-[A-Za-z0-9+/=]+'/, 'the one inline script is allowed by its hash');
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
  });

  it('lets observers connect only from this machine\'s names and pages', async () => {
    const observe = (headers: Record<string, string>) =>
      new Promise<string>((resolve) => {
        const socket = new WebSocket(`ws://127.0.0.1:${farm.server.wsPort}`, { headers });
        socket.on('open', () => socket.send(JSON.stringify({ type: 'observe', protocol: PROTOCOL_VERSION })));
        socket.on('message', (data) => {
          resolve(JSON.parse(String(data)).type === 'welcome' ? 'welcome' : String(data));
          socket.close();
        });
        socket.on('error', () => resolve('error'));
      });
    assert.equal(await observe({}), 'welcome');
    assert.match(await observe({ origin: 'http://evil.example' }), /other sites/);
    assert.match(await observe({ host: 'evil.example' }), /other sites/);
    assert.match(await observe({ 'x-forwarded-for': '203.0.113.9' }), /wrong or missing access token/);
  });
});

describe('user and worker tokens, sessions', () => {
  let farm: TestFarm;
  let port: number;
  const lines: string[] = [];
  let userToken: string;

  before(async () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'archenland-access-'));
    const settings = { ...serverSchema.parse({}), bind: '127.0.0.1', port: 0, web_port: 0, data_dir: path.join(root, 'server'), trust_loopback: false } as ServerSettings;
    const sink = new Writable({ write: (chunk, _encoding, done) => (lines.push(String(chunk)), done()) });
    const server = await startServer(settings, pino({ level: 'info' }, sink));
    farm = { server, workers: [], root, addWorker: () => { throw new Error('unused'); }, close: () => server.close() };
    port = server.httpPort;
    userToken = server.tokens.user!;
  });
  after(async () => farm?.close());

  it('makes one user and one worker token on first start, in files only its user reads, and logs neither', () => {
    const { user, worker } = farm.server.tokens;
    assert.match(user!, /^ark_user_/);
    assert.match(worker!, /^ark_worker_/);
    for (const file of [farm.server.dataDir.userTokenFile, farm.server.dataDir.workerTokenFile]) {
      assert.equal(statSync(file).mode & 0o777, 0o600, file);
    }
    const logged = lines.join('');
    assert.match(logged, /user-token/);
    assert.ok(!logged.includes(user!) && !logged.includes(worker!), 'no secret in the logs');
  });

  it('keeps only digests of tokens in the database', () => {
    const db = new SQLite(farm.server.dataDir.database, { readonly: true });
    const rows = db.prepare('SELECT * FROM tokens').all() as Array<Record<string, string>>;
    db.close();
    assert.equal(rows.length, 2);
    const stored = JSON.stringify(rows);
    assert.ok(!stored.includes(farm.server.tokens.user!) && !stored.includes(farm.server.tokens.worker!));
  });

  it('a worker token opens the worker protocol only', async () => {
    const auth = { authorization: `Bearer ${farm.server.tokens.worker}` };
    for (const [method, target] of [['GET', '/api/jobs'], ['POST', '/api/jobs'], ['DELETE', '/api/jobs/0123456789abcdef'], ['GET', '/api/tokens'], ['POST', '/api/tokens']]) {
      assert.equal((await request(port, method!, target!, auth)).status, 403, `${method} ${target}`);
    }
    const login = await request(port, 'POST', '/api/login', json, JSON.stringify({ token: farm.server.tokens.worker }));
    assert.equal(login.status, 401);
    assert.match(login.body, /worker token cannot log in/);
    const blend = await request(port, 'GET', `/api/worker/blends/${'a'.repeat(64)}`, auth);
    assert.equal(blend.status, 404, 'a worker route answers normally');
  });

  it('a user token cannot run a worker', async () => {
    await assert.rejects(ScriptedWorker.connect(farm, { token: userToken }), /no welcome message arrived/);
  });

  it('creates, lists and revokes tokens; a revoked worker token closes its connection and opens nothing more', async () => {
    const auth = { authorization: `Bearer ${userToken}` };
    const created = await request(port, 'POST', '/api/tokens', { ...auth, ...json }, JSON.stringify({ role: 'worker', name: 'render-07' }));
    assert.equal(created.status, 201);
    const token = JSON.parse(created.body);
    assert.equal(token.role, 'worker');
    assert.match(token.token, /^ark_worker_/);

    const list = JSON.parse((await request(port, 'GET', '/api/tokens', auth)).body) as Array<Record<string, unknown>>;
    assert.ok(list.some((t) => t.id === token.id && t.name === 'render-07'));
    assert.ok(list.every((t) => !('token' in t)), 'secrets are never listed');
    assert.equal((await request(port, 'POST', '/api/tokens', { ...auth, ...json }, JSON.stringify({ role: 'admin' }))).status, 400);

    const worker = await ScriptedWorker.connect(farm, { token: token.token, name: 'render-07' });
    const closed = new Promise<string>((resolve) => worker['socket'].once('close', (_code: number, reason: Buffer) => resolve(String(reason))));
    assert.equal((await request(port, 'DELETE', `/api/tokens/${token.id}`, auth)).status, 204);
    assert.match(await closed, /revoked/);
    const after = await request(port, 'GET', `/api/worker/blends/${'a'.repeat(64)}`, { authorization: `Bearer ${token.token}` });
    assert.equal(after.status, 401);
    assert.equal((await request(port, 'DELETE', `/api/tokens/${token.id}`, auth)).status, 404);
  });

  it('browser sessions are random, kept on the server, and end at logout', async () => {
    const login = await request(port, 'POST', '/api/login', json, JSON.stringify({ token: userToken }));
    assert.equal(login.status, 200);
    const cookie = String(login.headers['set-cookie']).split(';')[0]!;
    assert.match(cookie, /^archenland_session=[A-Za-z0-9_-]{40,}$/);
    assert.ok(!cookie.includes(userToken));
    assert.match(String(login.headers['set-cookie']), /HttpOnly; SameSite=Strict/);
    const again = String((await request(port, 'POST', '/api/login', json, JSON.stringify({ token: userToken }))).headers['set-cookie']).split(';')[0];
    assert.notEqual(again, cookie, 'each login is a new session');

    assert.equal((await request(port, 'GET', '/api/jobs', { cookie })).status, 200);
    assert.deepEqual(JSON.parse((await request(port, 'GET', '/api/session', { cookie })).body), { authenticated: true });
    const logout = await request(port, 'POST', '/api/logout', { cookie });
    assert.match(String(logout.headers['set-cookie']), /Max-Age=0/);
    assert.equal((await request(port, 'GET', '/api/jobs', { cookie })).status, 401, 'the session ended on the server');
    assert.equal((await request(port, 'GET', '/api/jobs', { cookie: 'archenland_session=forged' })).status, 401);
  });
});

describe('credentials kept in the store', () => {
  it('expire sessions, end them with their token, and survive a restart', async () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'archenland-cred-')), 'farm.sqlite');
    let now = Date.parse('2026-12-01T12:00:00Z');
    const store = await Store.open(file);
    const credentials = await Credentials.open(store.credentials, () => now);
    const { info, token } = await credentials.create('user', 'alice');
    const session = await credentials.startSession(info);
    assert.equal(credentials.verify(token)?.name, 'alice');
    assert.equal(credentials.session(session)?.id, info.id);
    await store.committed();

    const reopened = await Credentials.open(store.credentials, () => now);
    assert.equal(reopened.session(session)?.id, info.id, 'kept across a restart');
    now += SESSION_LIFETIME_MS + 1;
    assert.equal(reopened.session(session), null, 'expired');

    now -= SESSION_LIFETIME_MS;
    const second = await credentials.startSession(info);
    const dataDir = { tokenFile: path.join(path.dirname(file), 'farm-token') } as never;
    await credentials.revoke(info.id, dataDir, false);
    assert.equal(credentials.session(second), null, 'revoking the token ends its sessions');
    assert.equal(credentials.verify(token), null);
    await store.close();
  });

  it('keeps an existing single farm token working for both roles until it is revoked', async () => {
    const farm = await startTestFarm({ server: { trust_loopback: false, token: 'legacy-farm-token-0123456789' } });
    try {
      const auth = { authorization: 'Bearer legacy-farm-token-0123456789' };
      assert.equal((await request(farm.server.httpPort, 'GET', '/api/jobs', auth)).status, 200);
      assert.equal((await request(farm.server.httpPort, 'GET', `/api/worker/blends/${'a'.repeat(64)}`, auth)).status, 404);
      const worker = await ScriptedWorker.connect(farm, { token: 'legacy-farm-token-0123456789' });
      worker.close();
      const refused = await request(farm.server.httpPort, 'DELETE', '/api/tokens/farm', auth);
      assert.equal(refused.status, 409, 'a token from the settings is removed from the settings');
    } finally {
      await farm.close();
    }
  });
});

describe('limits for strangers', () => {
  let farm: TestFarm;
  before(async () => (farm = await startTestFarm({ server: { trust_loopback: false } })));
  after(async () => farm?.close());

  it(`refuses more than ${MAX_UNIDENTIFIED_CONNECTIONS} WebSocket connections that have not said who they are`, async () => {
    const url = `ws://127.0.0.1:${farm.server.wsPort}`;
    const silent = await Promise.all(
      Array.from({ length: MAX_UNIDENTIFIED_CONNECTIONS }, () => new Promise<WebSocket>((resolve) => {
        const socket = new WebSocket(url);
        socket.on('open', () => resolve(socket));
      })),
    );
    const extra = new WebSocket(url);
    const code = await new Promise<number>((resolve) => extra.on('close', (closeCode) => resolve(closeCode)));
    assert.equal(code, 1013);
    for (const socket of silent) socket.close();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const worker = await ScriptedWorker.connect(farm);
    worker.close();
  });

  it('drops a request whose body does not arrive in time (uploads excepted)', async () => {
    const { bareHttpOptions } = await import('./helpers/http-app.ts');
    const { buildHttpApp } = await import('../src/edge/http.ts');
    const { DataDir } = await import('../src/store/index.ts');
    const { silentLogger } = await import('../src/util/log.ts');
    const app = buildHttpApp(farm.server.farm, new DataDir(os.tmpdir()), await bareHttpOptions({ requestReadLimitMs: 300 }), silentLogger);
    await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const { port } = app.server.address() as { port: number };
      const started = Date.now();
      const outcome = await new Promise<string>((resolve) => {
        const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/api/login', headers: { ...json, 'content-length': '100' } });
        req.on('response', (response) => resolve(`answered ${response.statusCode}`));
        req.on('error', () => resolve('closed'));
        req.write('{"tok'); // and nothing more
      });
      assert.equal(outcome, 'closed');
      assert.ok(Date.now() - started < 5000);
    } finally {
      await app.close();
    }
  });
});
