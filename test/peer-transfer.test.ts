/**
 * Peer transfer (issue #17 §3) over real HTTP and WebSockets: a real server, workers'
 * real file paths (testkit/file-worker.ts: the connection, caches, fetcher and peer
 * server of src/worker), and hostile peers that fail, stall, sit busy or send wrong bytes.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { apiPath, PROTOCOL_VERSION, UPLOAD_KEY_HEADER, type ServerToWorker } from '../src/protocol/index.ts';
import { trimCache } from '../src/worker/cache-budget.ts';
import { cachedFilePath } from '../src/worker/cache-paths.ts';
import { uploadProject } from '../testkit/api.ts';
import { startTestFarm, type TestFarm } from '../testkit/farm.ts';
import { FileWorker } from '../testkit/file-worker.ts';
import { ConfigError, workerSchema } from '../src/config/index.ts';
import { silentLogger } from '../src/util/log.ts';
import { RenderWorker } from '../src/worker/index.ts';
import { until } from './helpers/processes.ts';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const KiB = 1024;

/** Bytes the server has sent workers (.blend and project files), from /metrics. */
async function serverBytesSent(farm: TestFarm): Promise<number> {
  const text = await (await fetch(`${farm.server.httpUrl}/metrics`)).text();
  return Number(/^archenland_worker_download_bytes_total (\d+)/m.exec(text)?.[1] ?? Number.NaN);
}

/**
 * A hostile worker: a real WebSocket worker that claims to serve files on `port` (a server
 * the test controls) and to hold `files`, so the server points others to it.
 */
async function hostilePeer(farm: TestFarm, port: number, files: string[], workerId?: string): Promise<{ peerKey: string; close(): void }> {
  const socket = new WebSocket(`ws://127.0.0.1:${farm.server.wsPort}`);
  await new Promise((resolve) => socket.once('open', resolve));
  const welcome = new Promise<Extract<ServerToWorker, { type: 'welcome' }>>((resolve) =>
    socket.on('message', (data) => {
      const message = JSON.parse(String(data)) as ServerToWorker;
      if (message.type === 'welcome') resolve(message);
    }),
  );
  socket.send(JSON.stringify({ type: 'hello', role: 'worker', protocol: PROTOCOL_VERSION, token: farm.server.tokens.worker, name: 'hostile', host: 'x', threads: 1, blenderVersion: null, peerPort: port, ...(workerId ? { workerId } : {}) }));
  const { peerKey } = await welcome;
  socket.send(JSON.stringify({ type: 'files', added: files, reset: true }));
  await until(() => files.every((file) => farm.server.farm.holdersOf(file).length > 0), 10_000, 'the server to know a holder of every file');
  return { peerKey, close: () => socket.close() };
}

/** A peer server the test scripts; records what it was asked. */
async function scriptedPeer(handler: http.RequestListener): Promise<{ port: number; requests: http.IncomingHttpHeaders[]; close(): Promise<void> }> {
  const requests: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((request, response) => {
    requests.push(request.headers);
    handler(request, response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

describe('peer transfer: a project to many workers', () => {
  let farm: TestFarm;
  const workers: FileWorker[] = [];
  const start = async (name: string, options: { serve?: boolean; patience?: Parameters<typeof FileWorker.start>[0]['patience'] } = {}) => {
    const worker = await FileWorker.start({
      httpUrl: farm.server.httpUrl,
      wsUrl: `ws://127.0.0.1:${farm.server.wsPort}`,
      token: farm.server.tokens.worker!,
      cacheDir: path.join(farm.root, name),
      name,
      peerPort: options.serve === false ? undefined : 0,
      patience: options.patience ?? { windowMs: 400, minBytesPerSecond: 64 * KiB, waitLimitMs: 1_500 },
    });
    workers.push(worker);
    return worker;
  };
  /** A project file only the server has, for one test. */
  const newProject = async (count: number, size: number) => {
    const files = Array.from({ length: count }, (_, i) => ({ path: `tex/t${i}.png`, data: randomBytes(size) }));
    return { files, ...(await uploadProject(farm.server.httpUrl, farm.server.tokens.user!, files)) };
  };

  before(async () => {
    farm = await startTestFarm();
  });
  after(async () => {
    await Promise.all(workers.map((worker) => worker.stop()));
    await farm?.close();
    rmSync(farm.root, { recursive: true, force: true });
  });

  it('three workers starting at once: the server sends each file once, peers send the rest, every byte verified', async () => {
    const { files, project, blend } = await newProject(6, 256 * KiB);
    const projectBytes = files.reduce((sum, file) => sum + file.data.length, 0) + blend.size;
    const trio = await Promise.all(['peer-a', 'peer-b', 'peer-c'].map((name) => start(name)));
    const before = await serverBytesSent(farm);
    const trees = await Promise.all(trio.map((worker) => worker.prepare(project, blend)));
    for (const tree of trees) for (const file of files) assert.equal(sha256(readFileSync(path.join(tree, file.path))), sha256(file.data));
    assert.equal((await serverBytesSent(farm)) - before, projectBytes, 'each file left the server exactly once');
    const stats = trio.map((worker) => worker.files.fetcher.stats);
    assert.equal(stats.reduce((sum, s) => sum + s.fromServer, 0), projectBytes);
    assert.equal(stats.reduce((sum, s) => sum + s.fromPeers, 0), 2 * projectBytes, 'the other two copies came from peers');
    assert.equal(stats.reduce((sum, s) => sum + s.peerFailures, 0), 0);
  });

  it('workers that do not serve (no peer_port) each fetch from the server', async () => {
    const { project, blend, files } = await newProject(2, 64 * KiB);
    const projectBytes = files.reduce((sum, file) => sum + file.data.length, 0) + blend.size;
    const pair = await Promise.all(['plain-a', 'plain-b'].map((name) => start(name, { serve: false })));
    const before = await serverBytesSent(farm);
    await Promise.all(pair.map((worker) => worker.prepare(project, blend)));
    assert.equal((await serverBytesSent(farm)) - before, 2 * projectBytes);
  });

  /** One file held (so the server says) only by a scripted peer; a real worker fetches it. */
  const fetchPast = async (name: string, handler: http.RequestListener, patience?: Parameters<typeof FileWorker.start>[0]['patience']) => {
    const { files, project, blend } = await newProject(1, 256 * KiB);
    const file = sha256(files[0]!.data);
    const peer = await scriptedPeer(handler);
    const hostile = await hostilePeer(farm, peer.port, [file, blend.sha256]);
    try {
      const worker = await start(name, { patience });
      const tree = await worker.prepare(project, blend);
      assert.equal(sha256(readFileSync(path.join(tree, files[0]!.path))), file, 'the worker has the right bytes');
      return { worker, peer, hostile, file };
    } finally {
      hostile.close();
      await peer.close();
    }
  };

  it('a peer that sends wrong bytes is dropped and the server sends the file; the peer never sees a worker token', async () => {
    const { worker, peer, hostile } = await fetchPast('victim-bytes', (_request, response) => {
      response.writeHead(200, { 'content-length': 256 * KiB }).end(randomBytes(256 * KiB));
    });
    assert.ok(peer.requests.length >= 1, 'the peer was asked');
    for (const headers of peer.requests) assert.equal(headers.authorization, `Bearer ${hostile.peerKey}`, 'peers are asked with the peer key only');
    assert.ok(worker.files.fetcher.stats.peerFailures >= 1);
    assert.ok(worker.files.fetcher.stats.filesFromServer >= 1);
  });

  it('a peer that fails (HTTP 500) or stalls mid-file is dropped and the server sends the file', async () => {
    const failing = await fetchPast('victim-500', (_request, response) => response.writeHead(500).end('broken'));
    assert.ok(failing.worker.files.fetcher.stats.peerFailures >= 1);
    const stalls = await fetchPast('victim-stall', (_request, response) => {
      response.writeHead(200, { 'content-length': 256 * KiB });
      response.write(Buffer.alloc(1024)); // then nothing: the worker's speed check gives up after one window
    });
    assert.ok(stalls.worker.files.fetcher.stats.peerFailures >= 1);
    assert.equal(stalls.worker.files.fetcher.stats.fromPeers, 0);
  });

  it('a peer that is always busy is asked a few times, then dropped for the file, and the server sends it', async () => {
    const started = Date.now();
    // Patient enough that only dropping the peer (not waiting it out) ends this in time.
    const patience = { windowMs: 400, minBytesPerSecond: 64 * KiB, waitLimitMs: 60_000 };
    const { worker, peer } = await fetchPast('victim-busy', (_request, response) => response.writeHead(503).end('{"code":"PEER_BUSY","error":"busy"}'), patience);
    assert.ok(Date.now() - started < 20_000, 'not waited out');
    assert.ok(peer.requests.length >= 3, 'asked again while it said busy');
    assert.equal(worker.files.fetcher.stats.peerFailures, 0, 'busy is not a failure');
    assert.ok(worker.files.fetcher.stats.filesFromServer >= 1);
  });

  it('a peer that fails is passed over for another peer that holds the file: the server sends nothing', async () => {
    const { files, project, blend } = await newProject(1, 256 * KiB);
    const file = sha256(files[0]!.data);
    const good = await start('good-holder');
    await good.prepare(project, blend);
    const liar = await scriptedPeer((_request, response) => response.writeHead(200, { 'content-length': 256 * KiB }).end(randomBytes(256 * KiB)));
    // The lowest id: offered before the good holder when both are idle.
    const hostile = await hostilePeer(farm, liar.port, [file, blend.sha256], '000000aaaa');
    try {
      const worker = await start('victim-other-peer');
      const before = await serverBytesSent(farm);
      await worker.prepare(project, blend);
      assert.ok(liar.requests.length >= 1, 'the lying peer was tried first');
      assert.ok(worker.files.fetcher.stats.peerFailures >= 1);
      assert.equal(worker.files.fetcher.stats.fromServer, 0);
      assert.equal((await serverBytesSent(farm)) - before, 0, 'the other peer sent the file');
    } finally {
      hostile.close();
      await liar.close();
    }
  });

  it("a peer serves only its cache's complete files, by hash, to holders of the peer key; an evicted file is no longer offered", async () => {
    const { files, project, blend } = await newProject(1, 128 * KiB);
    const holder = await start('holder');
    await holder.prepare(project, blend);
    const file = sha256(files[0]!.data);
    const peerUrl = `http://127.0.0.1:${holder.files.peerPort}`;
    const peerKey = farm.server.farm.peerKey;
    const get = (urlPath: string, key?: string) => fetch(`${peerUrl}${urlPath}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
    assert.equal((await get(`/peer/files/${file}`)).status, 401, 'no key');
    assert.equal((await get(`/peer/files/${file}`, farm.server.tokens.worker!)).status, 401, 'a worker token is not the peer key');
    const ok = await get(`/peer/files/${file}`, peerKey);
    assert.equal(ok.status, 200);
    assert.equal(sha256(Buffer.from(await ok.arrayBuffer())), file);
    for (const bad of ['/peer/files/..%2F..%2Fetc%2Fpasswd', '/peer/files/abc', `/peer/files/${file.toUpperCase()}`]) {
      assert.equal((await get(bad, peerKey)).status, 400, bad);
    }
    assert.equal((await get(`/peer/files/${file}/../../manifests`, peerKey)).status, 404);
    assert.equal((await get(`/api/worker/files/${file}`, peerKey)).status, 404, 'one route only');
    // A half-downloaded file (temp name) and a link out of the cache are not served.
    const partial = 'ab'.repeat(32);
    mkdirSync(path.dirname(cachedFilePath(path.join(farm.root, 'holder'), partial)), { recursive: true });
    writeFileSync(`${cachedFilePath(path.join(farm.root, 'holder'), partial)}.1234.part`, 'half');
    assert.equal((await get(`/peer/files/${partial}`, peerKey)).status, 404);
    const linked = 'cd'.repeat(32);
    mkdirSync(path.dirname(cachedFilePath(path.join(farm.root, 'holder'), linked)), { recursive: true });
    symlinkSync('/etc/hostname', cachedFilePath(path.join(farm.root, 'holder'), linked));
    assert.equal((await get(`/peer/files/${linked}`, peerKey)).status, 404);
    // Evicted: gone from the cache, not served, and the server stops offering this worker.
    assert.ok(farm.server.farm.holdersOf(file).includes(holder.workerId));
    const removed: string[] = [];
    rmSync(path.join(farm.root, 'holder', 'projects'), { recursive: true, force: true });
    await trimCache(path.join(farm.root, 'holder'), 1, { blend: path.join(farm.root, 'holder', 'blends', `${blend.sha256}.blend`) }, (gone) => removed.push(gone));
    holder.files.evicted(removed);
    assert.equal((await get(`/peer/files/${file}`, peerKey)).status, 404);
    await until(() => !farm.server.farm.holdersOf(file).includes(holder.workerId), 10_000, 'the evicted file to leave its holder');
  });

  it('a peer serves two uploads at once and answers 503 to a third', async () => {
    const { files, project, blend } = await newProject(1, 8 * 1024 * KiB);
    const holder = await start('slots');
    await holder.prepare(project, blend);
    const file = sha256(files[0]!.data);
    const peerKey = farm.server.farm.peerKey;
    const open = () =>
      new Promise<http.IncomingMessage>((resolve, reject) =>
        http.get(`http://127.0.0.1:${holder.files.peerPort}/peer/files/${file}`, { headers: { authorization: `Bearer ${peerKey}` }, agent: false }, resolve).on('error', reject),
      );
    const [first, second] = [await open(), await open()];
    first.pause(); // not read: the uploads stay under way
    second.pause();
    const third = await open();
    assert.deepEqual([first.statusCode, second.statusCode, third.statusCode], [200, 200, 503]);
    third.resume();
    first.destroy();
    second.destroy();
  });

  it('the source question names the worker by its upload key and checks its input', async () => {
    const url = (sha: string, query = '') => `${farm.server.httpUrl}${apiPath('fileSources', { sha256: sha })}${query}`;
    const worker = farm.server.tokens.worker!;
    const sha = 'e'.repeat(64);
    const ask = (target: string, headers: Record<string, string>) => fetch(target, { headers: { authorization: `Bearer ${worker}`, ...headers } });
    assert.equal((await ask(url(sha), {})).status, 400, 'no upload key');
    assert.equal((await ask(url(sha), { [UPLOAD_KEY_HEADER]: 'x'.repeat(32) })).status, 503, 'an upload key of no connection');
    assert.equal((await fetch(`${farm.server.httpUrl}/api/worker/files/${'E'.repeat(64)}/sources`, { headers: { authorization: `Bearer ${worker}` } })).status, 400);
    assert.equal((await ask(url(sha, '?exclude=../x'), { [UPLOAD_KEY_HEADER]: 'x'.repeat(32) })).status, 400);
    const asUser = await fetch(url(sha), { headers: { authorization: `Bearer ${farm.server.tokens.user!}` } });
    assert.equal(asUser.status, 403);
  });

  it('a worker on a TLS farm refuses to serve peers: they would speak plain HTTP', () => {
    const settings = { ...workerSchema.parse({}), token: farm.server.tokens.worker!, cache_dir: path.join(farm.root, 'tls'), tls: true, peer_port: 0 };
    assert.throws(() => new RenderWorker(settings, silentLogger), (error: Error) => error instanceof ConfigError && /peer_port/.test(error.message));
  });

  it('revoking a worker token gives every peer a new peer key: the old one opens nothing', async () => {
    const { files, project, blend } = await newProject(1, 16 * KiB);
    const holder = await start('rotation-holder');
    await holder.prepare(project, blend);
    const created = await fetch(`${farm.server.httpUrl}${apiPath('createToken')}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${farm.server.tokens.user!}`, 'content-type': 'application/json' },
      body: JSON.stringify({ role: 'worker', name: 'leaving' }),
    });
    const { id, token } = (await created.json()) as { id: string; token: string };
    const leaving = await FileWorker.start({ httpUrl: farm.server.httpUrl, wsUrl: `ws://127.0.0.1:${farm.server.wsPort}`, token, cacheDir: path.join(farm.root, 'leaving'), name: 'leaving' });
    workers.push(leaving);
    const oldKey = farm.server.farm.peerKey;
    const revoked = await fetch(`${farm.server.httpUrl}${apiPath('revokeToken', { id })}`, { method: 'DELETE', headers: { authorization: `Bearer ${farm.server.tokens.user!}` } });
    assert.equal(revoked.status, 204);
    await until(() => farm.server.farm.peerKey !== oldKey, 10_000, 'a new peer key');
    const url = `http://127.0.0.1:${holder.files.peerPort}/peer/files/${sha256(files[0]!.data)}`;
    const withKey = (key: string) => fetch(url, { headers: { authorization: `Bearer ${key}` } }).then(async (r) => (await r.arrayBuffer(), r.status));
    // The holder learns the new key over its connection.
    const deadline = Date.now() + 5_000;
    while ((await withKey(farm.server.farm.peerKey)) !== 200 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(await withKey(farm.server.farm.peerKey), 200);
    assert.equal(await withKey(oldKey), 401);
  });
});
