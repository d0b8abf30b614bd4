import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ConfigError, serverSchema, workerSchema, type ServerSettings } from '../src/config/index.ts';
import type { Job, Worker } from '../src/protocol/index.ts';
import { startServer } from '../src/server/index.ts';
import { loadServerTls } from '../src/edge/tls.ts';
import { silentLogger } from '../src/util/log.ts';
import { fingerprintOfPem, parseFingerprint, TlsClient } from '../src/util/tls-client.ts';
import { RenderWorker } from '../src/worker/index.ts';
import { startTestFarm, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { freePorts, until } from './helpers/processes.ts';
import { BLENDER, makeTestScene } from '../testkit/scenes.ts';

/*
 * Item 5, "clear text on the network": with tls_cert and tls_key the server speaks HTTPS
 * and WSS; workers and the CLI trust it through a CA file or a pinned fingerprint, and
 * refuse it otherwise before sending anything (a token least of all). Only 127.0.0.1.
 */

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../bin/archenland.js', import.meta.url));

interface Certificate {
  cert: string;
  key: string;
  fingerprint: string;
}

async function makeCertificate(dir: string, name: string, names = 'DNS:localhost,IP:127.0.0.1'): Promise<Certificate> {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}-key.pem`);
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-subj', '/CN=localhost', '-addext', `subjectAltName=${names}`, '-days', '2',
    '-keyout', key, '-out', cert,
  ]);
  return { cert, key, fingerprint: fingerprintOfPem(readFileSync(cert)) };
}

function cli(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ARCHENLAND_')));
    const child = spawn(process.execPath, [BIN, ...args], { cwd: opts.cwd ?? tmpdir(), env: { ...env, ...opts.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/**
 * A TLS server with the farm's own certificate that records what clients send: a client
 * that refuses the certificate must leave it TCP connections and not one byte of data.
 * Whoever does send something is cut off, so no client waits for an answer.
 */
class TlsRecorder {
  connections = 0;
  bytes = 0;
  port = 0;
  private readonly server: tls.Server;

  constructor(certificate: Certificate) {
    this.server = tls.createServer({ cert: readFileSync(certificate.cert), key: readFileSync(certificate.key) }, (socket) => {
      socket.on('data', (data) => {
        this.bytes += data.length;
        socket.destroy();
      });
      socket.on('error', () => {});
    });
    this.server.on('connection', () => this.connections++);
    this.server.on('tlsClientError', () => {});
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe('TLS between workers, the CLI and the server', () => {
  let dir: string;
  let farmCert: Certificate;
  let otherCert: Certificate;
  let farm: TestFarm;
  let scene: string;
  let base: string;
  let userToken: string;
  let workerToken: string;
  const trustingClient = () => new TlsClient({ caFile: farmCert.cert });

  const api = async <T>(path: string, client = trustingClient()): Promise<T> => {
    const response = await client.send(new URL(path, base), { headers: { authorization: `Bearer ${userToken}` } });
    const body = await text(response);
    assert.equal(response.statusCode, 200, body);
    return JSON.parse(body) as T;
  };

  /** A worker in this process, not started: `run()` resolves with why it stopped. */
  const makeWorker = (name: string, settings: Record<string, unknown>) =>
    new RenderWorker(
      {
        ...workerSchema.parse({}),
        blender_path: BLENDER,
        threads: 1,
        prewarm_blender: false,
        address: '127.0.0.1',
        port: farm.server.wsPort,
        web_port: farm.server.httpPort,
        name,
        cache_dir: join(dir, name),
        token: workerToken,
        ...settings,
      },
      silentLogger,
    );

  const workerNamed = async (name: string) => (await api<Worker[]>('/api/workers')).find((w) => w.name === name);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'archenland-tls-'));
    [farmCert, otherCert, scene] = await Promise.all([
      makeCertificate(dir, 'farm'),
      makeCertificate(dir, 'other'),
      makeTestScene({ frames: '1-1', width: 32, height: 24, samples: 1 }),
    ]);
    farm = await startTestFarm({ server: { tls_cert: farmCert.cert, tls_key: farmCert.key } });
    base = farm.server.httpUrl;
    userToken = farm.server.tokens.user!;
    workerToken = farm.server.tokens.worker!;
  });

  after(async () => {
    await farm?.close();
  });

  it('serves the API over https, says so in /api/info, and gives plain http nothing', async () => {
    assert.match(base, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(farm.server.tlsFingerprint, farmCert.fingerprint);
    const info = await api<{ wsPort: number; tls: boolean }>('/api/info');
    assert.deepEqual(info, { ...info, wsPort: farm.server.wsPort, tls: true });

    const plain = base.replace('https:', 'http:');
    await assert.rejects(fetch(`${plain}/api/info`));
    const viaCli = await cli(['jobs', '--json', '--server', plain, '--token', userToken]);
    assert.equal(viaCli.code, 3, viaCli.stderr);
    assert.match(viaCli.stderr, /cannot reach the server at http:\/\/127\.0\.0\.1/);
  });

  it('a worker trusting the CA file (tls_ca) renders over wss, downloading and uploading over https', async () => {
    const worker = makeWorker('ca-worker', { tls: true, tls_ca: farmCert.cert });
    const stopped = worker.run();
    try {
      // Submitted by the CLI over https too (upload.ts), trusting the same file.
      const submitted = await cli(['submit', scene, '--frames', '1', '--json', '--server', base, '--token', userToken, '--tls-ca', farmCert.cert]);
      assert.equal(submitted.code, 0, submitted.stderr);
      const job = JSON.parse(submitted.stdout) as Job;
      const finished = await waitForJob(farm.server, job.id, ['completed', 'failed', 'cancelled']);
      assert.equal(finished.state, 'completed', finished.error ?? '');
      assert.equal((await workerNamed('ca-worker'))?.framesRendered, 1);
      assert.equal(readdirSync(join(dir, 'ca-worker', 'blends')).filter((f) => f.endsWith('.blend')).length, 1, 'the .blend was not downloaded');
    } finally {
      await worker.shutdown();
    }
    assert.equal(await stopped, 'shut down');
  });

  it('a worker with only tls_fingerprint (no colons, lower case) is on TLS and renders; submit --wait follows over wss', async () => {
    const pin = farmCert.fingerprint.replaceAll(':', '').toLowerCase();
    const worker = makeWorker('pinned-worker', { tls_fingerprint: pin });
    const stopped = worker.run();
    try {
      const result = await cli(['submit', scene, '--frames', '1', '--wait', '--json', '--server', base, '--token', userToken, '--tls-fingerprint', farmCert.fingerprint]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal((JSON.parse(result.stdout) as Job).state, 'completed');
      assert.equal((await workerNamed('pinned-worker'))?.framesRendered, 1);
    } finally {
      await worker.shutdown();
    }
    assert.equal(await stopped, 'shut down');
  });

  it('a worker with a wrong fingerprint stops with a clear message and sends nothing', async () => {
    const recorder = await new TlsRecorder(farmCert).start();
    try {
      const worker = makeWorker('wrong-pin', { tls: true, tls_fingerprint: otherCert.fingerprint, port: recorder.port, web_port: recorder.port });
      const reason = await worker.run();
      await worker.shutdown();
      assert.equal(reason, `the server's certificate has fingerprint ${farmCert.fingerprint}, expected ${otherCert.fingerprint}`);
      assert.ok(recorder.connections >= 1, 'the worker never tried');
      assert.equal(recorder.bytes, 0, 'the worker sent data (its hello, with the token) to a server it did not trust');
    } finally {
      await recorder.close();
    }
    // And against the real server: refused on its side too, so it never registered.
    const worker = makeWorker('wrong-pin', { tls_fingerprint: otherCert.fingerprint });
    assert.match(await worker.run(), /^the server's certificate has fingerprint /);
    await worker.shutdown();
    assert.equal(await workerNamed('wrong-pin'), undefined);
  });

  it('a worker with tls but no CA for a self-signed certificate stops: not trusted, nothing sent', async () => {
    const recorder = await new TlsRecorder(farmCert).start();
    try {
      const worker = makeWorker('no-ca', { tls: true, port: recorder.port, web_port: recorder.port });
      const reason = await worker.run();
      await worker.shutdown();
      assert.match(reason, /^the server's certificate is not trusted \(self[- ]signed certificate\): give the certificate authority .*tls_ca.*tls_fingerprint/);
      assert.ok(recorder.connections >= 1);
      assert.equal(recorder.bytes, 0);
    } finally {
      await recorder.close();
    }
  });

  it('a worker whose CA file is missing or not a certificate does not start', () => {
    assert.throws(() => makeWorker('bad-ca', { tls_ca: join(dir, 'missing.pem') }), (e: Error) => e instanceof ConfigError && /cannot read the certificate authority file .*missing\.pem/.test(e.message));
    assert.throws(() => makeWorker('bad-ca', { tls_ca: farmCert.key }), (e: Error) => e instanceof ConfigError && /holds no PEM certificate/.test(e.message));
  });

  it('the CLI lists jobs over https with --tls-ca, --tls-fingerprint, or the same from the environment', async () => {
    const port = new URL(base).port;
    const ways: Array<{ args: string[]; env?: Record<string, string> }> = [
      { args: ['--server', base, '--tls-ca', farmCert.cert] },
      { args: ['--server', base, '--tls-fingerprint', farmCert.fingerprint] },
      // No scheme: https, since a certificate to trust was given.
      { args: ['--server', `127.0.0.1:${port}`, '--tls-fingerprint', farmCert.fingerprint.replaceAll(':', '')] },
      { args: ['--server', base], env: { ARCHENLAND_TLS_CA: farmCert.cert } },
      { args: [], env: { ARCHENLAND_SERVER: base, ARCHENLAND_TLS_FINGERPRINT: farmCert.fingerprint } },
    ];
    for (const way of ways) {
      const result = await cli(['jobs', '--json', '--token', userToken, ...way.args], { env: way.env });
      assert.equal(result.code, 0, `${JSON.stringify(way)}: ${result.stderr}`);
      assert.equal((JSON.parse(result.stdout) as Job[]).length, 2);
    }
  });

  it('the CLI refuses a wrong fingerprint or an untrusted certificate, says why, and sends nothing', async () => {
    const recorder = await new TlsRecorder(farmCert).start();
    try {
      const server = `https://127.0.0.1:${recorder.port}`;
      const wrong = await cli(['jobs', '--json', '--server', server, '--token', userToken, '--tls-fingerprint', otherCert.fingerprint]);
      assert.equal(wrong.code, 2, wrong.stderr);
      assert.ok(
        wrong.stderr.includes(`refused the server at ${server}: the server's certificate has fingerprint ${farmCert.fingerprint}, expected ${otherCert.fingerprint}`),
        wrong.stderr,
      );
      const untrusted = await cli(['jobs', '--json', '--server', server, '--token', userToken]);
      assert.equal(untrusted.code, 2, untrusted.stderr);
      assert.match(untrusted.stderr, /refused the server at https:\/\/127\.0\.0\.1:\d+: the server's certificate is not trusted \(self[- ]signed certificate\)/);
      const otherCa = await cli(['submit', scene, '--server', server, '--token', userToken, '--tls-ca', otherCert.cert]);
      assert.equal(otherCa.code, 2, otherCa.stderr);
      assert.match(otherCa.stderr, /the server's certificate is not trusted/);
      assert.ok(recorder.connections >= 3, `only ${recorder.connections} connections`);
      assert.equal(recorder.bytes, 0, 'the CLI sent a request (and its token) to a server it did not trust');
    } finally {
      await recorder.close();
    }
  });

  it('the CLI refuses a certificate its CA vouches for but made for another name, and a pin still accepts it', async () => {
    const named = await makeCertificate(dir, 'named', 'DNS:farm.example');
    const recorder = await new TlsRecorder(named).start();
    try {
      const server = `https://127.0.0.1:${recorder.port}`;
      const result = await cli(['jobs', '--server', server, '--token', userToken, '--tls-ca', named.cert]);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, /the server's certificate is not for this address \(.*127\.0\.0\.1.*\): connect by a name it lists, or pin it/);
      assert.equal(recorder.bytes, 0);
      // Pinned, the name does not matter: the request goes out (and the recorder cuts it off).
      const pinned = await cli(['jobs', '--server', server, '--token', userToken, '--tls-fingerprint', named.fingerprint]);
      assert.equal(pinned.code, 3, pinned.stderr);
      assert.ok(recorder.bytes > 0, 'the pinned request was not sent');
    } finally {
      await recorder.close();
    }
  });

  it('the CLI explains an https address for a plain server and bad trust options', async () => {
    const plain = http.createServer((_request, response) => response.end('{}'));
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    try {
      const port = (plain.address() as { port: number }).port;
      const result = await cli(['jobs', '--server', `https://127.0.0.1:${port}`, '--tls-ca', farmCert.cert]);
      assert.equal(result.code, 3, result.stderr);
      assert.match(result.stderr, /does not speak TLS on this port/);
    } finally {
      plain.close();
    }
    const cases: Array<[string[], RegExp]> = [
      [['--server', base.replace('https:', 'http:'), '--tls-ca', farmCert.cert], /is plain http:\/\/, but a certificate to trust was given .*use https:\/\//],
      [['--server', base, '--tls-fingerprint', 'AB:CD'], /--tls-fingerprint: "AB:CD" is not a SHA-256 fingerprint/],
      [['--server', base, '--tls-ca', join(dir, 'missing.pem')], /cannot read the certificate authority file/],
    ];
    for (const [args, message] of cases) {
      const bad = await cli(['jobs', ...args]);
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, message);
    }
  });
});

describe('TLS settings of the server', () => {
  let dir: string;
  let farmCert: Certificate;
  let otherCert: Certificate;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'archenland-tls-config-'));
    [farmCert, otherCert] = await Promise.all([makeCertificate(dir, 'farm'), makeCertificate(dir, 'other')]);
  });

  const settings = (tls: Partial<ServerSettings>): ServerSettings =>
    ({ ...serverSchema.parse({}), bind: '127.0.0.1', port: 0, web_port: 0, data_dir: join(dir, 'data'), ...tls }) as ServerSettings;

  it('refuses a certificate without its key, or a key without its certificate, before starting anything', async () => {
    await assert.rejects(startServer(settings({ tls_cert: farmCert.cert }), silentLogger), (e: Error) =>
      e instanceof ConfigError && e.message === 'tls_cert is set but tls_key is not: HTTPS needs both the certificate (tls_cert) and its private key (tls_key)');
    await assert.rejects(startServer(settings({ tls_key: farmCert.key }), silentLogger), (e: Error) => e instanceof ConfigError && /^tls_key is set but tls_cert is not/.test(e.message));
    assert.equal(existsSync(join(dir, 'data')), false, 'the server created its data folder anyway');
  });

  it('refuses unreadable files, a key that is not the certificate\'s, and a key given as the certificate', () => {
    const fails = (tls: Partial<ServerSettings>, message: RegExp) =>
      assert.throws(() => loadServerTls(settings(tls)), (e: Error) => e instanceof ConfigError && message.test(e.message));
    fails({ tls_cert: join(dir, 'missing.pem'), tls_key: farmCert.key }, /^cannot read tls_cert .*missing\.pem/);
    fails({ tls_cert: farmCert.cert, tls_key: otherCert.key }, /other-key\.pem \(tls_key\) is not the private key of .*farm\.pem \(tls_cert\)/);
    fails({ tls_cert: farmCert.key, tls_key: farmCert.key }, /farm-key\.pem \(tls_cert\) holds no PEM certificate/);
    assert.equal(loadServerTls(settings({}))?.fingerprint, undefined);
    assert.equal(loadServerTls(settings({ tls_cert: farmCert.cert, tls_key: farmCert.key }))?.fingerprint, farmCert.fingerprint);
  });

  it('reads fingerprints in the forms people paste', () => {
    const fp = farmCert.fingerprint;
    for (const form of [fp, fp.toLowerCase(), fp.replaceAll(':', ''), `sha256//${fp}`, `SHA256 Fingerprint=${fp}`]) assert.equal(parseFingerprint(form), fp, form);
    for (const bad of ['', 'AB:CD', `${fp}:00`, fp.replace(/.$/, 'G')]) assert.equal(parseFingerprint(bad), null, bad);
  });
});

describe('archenland start with tls_cert and tls_key', () => {
  let dir: string;
  let farm: ChildProcess | undefined;

  after(() => {
    farm?.kill('SIGTERM');
  });

  it('wires its local worker to the TLS server, and the CLI finds https and the certificate in settings.conf', async () => {
    dir = mkdtempSync(join(tmpdir(), 'archenland-tls-start-'));
    await makeCertificate(dir, 'server');
    copyFileSync(await makeTestScene({ frames: '1-1', width: 32, height: 24, samples: 1 }), join(dir, 'scene.blend'));
    const [port, webPort] = await freePorts(2);
    writeFileSync(
      join(dir, 'settings.conf'),
      `port = ${port}\nweb_port = ${webPort}\nbind = "127.0.0.1"\ntls_cert = "server.pem"\ntls_key = "server-key.pem"\n`,
    );
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ARCHENLAND_')));
    const started = spawn(process.execPath, [BIN, 'start', '--threads', '1'], { cwd: dir, env: { ...env, ARCHENLAND_LOG_LEVEL: 'warn' } });
    farm = started;
    let output = '';
    started.stdout!.on('data', (d) => (output += d));
    started.stderr!.on('data', (d) => (output += d));
    await until(() => output.includes(`https://127.0.0.1:${webPort}`) || started.exitCode !== null, 30_000, 'the start banner');
    assert.equal(started.exitCode, null, `archenland start exited:\n${output}`);

    // No --server, --tls-*: https and trust (the server's own certificate) come from settings.conf.
    const userTokenFile = join(dir, 'archenland-data', 'user-token');
    const token = existsSync(userTokenFile) ? { ARCHENLAND_TOKEN: readFileSync(userTokenFile, 'utf8').trim() } : undefined;
    const result = await cli(['submit', 'scene.blend', '--frames', '1', '--wait', '--json'], { cwd: dir, env: token });
    assert.equal(result.code, 0, `${result.stderr}\nfarm output:\n${output}`);
    const job = JSON.parse(result.stdout) as Job;
    assert.equal(job.state, 'completed', job.error ?? '');
    assert.doesNotMatch(output, /local worker stopped/);
  });
});
