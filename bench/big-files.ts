/**
 * Big files: a 1 GB .blend uploaded (streamed, as the CLI does), then downloaded by 20
 * simulated workers at once, then a stream of 50 MB frame uploads. The server runs in a
 * child process so its RSS growth can be read (target < 64 MB: files must stream, not sit
 * in memory), and each transfer is put next to the same transfer against a trivial HTTP
 * sink (bench/lib/sink-server.ts), with curl for the uploads, in the same run.
 */
import { apiPath } from '../src/protocol/index.ts';
import { execFile, execFileSync, fork, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ApiClient } from '../src/cli/client.ts';
import { uploadJob } from '../src/cli/upload.ts';
import { BLEND_HEAD, BLEND_TAIL, fakeBlend, postJson, submitJob } from '../testkit/api.ts';
import { fakeScene } from '../testkit/fakes.ts';
import { SimulatedWorkers } from '../testkit/sim-worker.ts';
import { fmtMB, fmtRatio, fmtS, mdTable, median, sleep, type BenchContext, type BenchResult, type Benchmark } from './lib/harness.ts';
import { option } from './lib/options.ts';
import { ServerProcess } from './lib/server-process.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const SINK = fileURLToPath(new URL('./lib/sink-server.ts', import.meta.url));
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Writes `head`, then random filler (a 1 MiB block repeated), then `tail`: `size` bytes in all. */
async function writeFiller(file: string, size: number, head: Buffer, tail: Buffer): Promise<string> {
  const block = randomBytes(MiB);
  const out = createWriteStream(file);
  const hash = createHash('sha256');
  const write = async (chunk: Buffer) => {
    hash.update(chunk);
    if (!out.write(chunk)) await once(out, 'drain');
  };
  await write(head);
  let left = size - head.length - tail.length;
  while (left > 0) {
    const chunk = left >= MiB ? block : block.subarray(0, left);
    await write(chunk);
    left -= chunk.length;
  }
  await write(tail);
  out.end();
  await once(out, 'finish');
  return hash.digest('hex');
}

function ensureCurl(ctx: BenchContext): void {
  try {
    execFileSync('curl', ['--version'], { stdio: 'ignore' });
  } catch {
    ctx.log('curl is missing: installing it from Debian packages');
    execFileSync('bash', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl'], { stdio: 'inherit' });
  }
}

/** curl's own timing of one transfer, seconds. */
async function curl(args: string[]): Promise<{ seconds: number; status: number; body: string }> {
  const { stdout } = await run('curl', ['-sS', '-H', 'Expect:', '-w', '\n%{http_code} %{time_total}', ...args], { maxBuffer: 16 * MiB });
  const lines = stdout.trimEnd().split('\n');
  const [status, seconds] = lines.pop()!.split(' ').map(Number);
  return { seconds: seconds!, status: status!, body: lines.join('\n') };
}

/** `count` concurrent GETs, bytes counted and dropped; resolves with the wall time. */
async function parallelDownloads(url: string, count: number, headers: Record<string, string>, expectBytes: number): Promise<number> {
  const agent = new http.Agent({ keepAlive: false, maxSockets: count });
  const start = performance.now();
  await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<void>((resolve, reject) => {
          http
            .get(url, { agent, headers }, (response) => {
              let bytes = 0;
              if (response.statusCode !== 200) reject(new Error(`GET ${url}: HTTP ${response.statusCode}`));
              response.on('data', (chunk: Buffer) => (bytes += chunk.length));
              response.on('end', () => (bytes === expectBytes ? resolve() : reject(new Error(`GET ${url}: ${bytes} of ${expectBytes} bytes`))));
              response.on('error', reject);
            })
            .on('error', reject);
        }),
    ),
  );
  agent.destroy();
  return performance.now() - start;
}

/** Sequential PUTs of a file, as the worker's uploader sends them; resolves with the wall time. */
async function sequentialPuts(url: string, file: string, size: number, count: number): Promise<number> {
  const agent = new http.Agent({ keepAlive: true });
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    await new Promise<void>((resolve, reject) => {
      const request = http.request(url, { method: 'PUT', agent, headers: { 'content-type': 'application/octet-stream', 'content-length': size } });
      request.on('response', (response) => {
        response.resume();
        response.on('end', () => (response.statusCode === 200 ? resolve() : reject(new Error(`PUT: HTTP ${response.statusCode}`))));
      });
      request.on('error', reject);
      createReadStream(file).pipe(request);
    });
  }
  agent.destroy();
  return performance.now() - start;
}

async function uploadJobOf(server: ServerProcess, blend: Buffer): Promise<string> {
  return (await submitJob(server.httpUrl, server.token, blend)).id;
}

async function startSink(file: string): Promise<{ url: string; child: ChildProcess }> {
  const child = fork(SINK, [], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, SINK_FILE: file, SINK_DIR: path.dirname(file) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const [message] = (await once(child, 'message')) as [{ port: number }];
  return { url: `http://127.0.0.1:${message.port}`, child };
}

/** Peak RSS growth of the server during `work`, over its RSS just before. */
async function measured<T>(server: ServerProcess, work: () => Promise<T>): Promise<{ value: T; growth: number; before: number; peak: number }> {
  await sleep(300);
  const before = server.rss();
  let peak = before;
  const exact = server.resetPeakRss();
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, server.rss());
      await sleep(50);
    }
  })();
  let value: T;
  try {
    value = await work();
  } finally {
    sampling = false;
    await sampler;
  }
  if (exact) peak = Math.max(peak, server.peakRss());
  return { value, growth: peak - before, before, peak };
}

export const bigFiles: Benchmark = {
  name: 'big-files',
  title: 'Big files: 1 GB scene, 50 MB frames',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const sizeMB = option(ctx, 'size-mb', { default: 1024, quick: 200, min: 1, integer: true });
    const downloads = option(ctx, 'downloads', { default: 20, min: 1, integer: true });
    const frameMB = option(ctx, 'frame-mb', { default: 50, min: 1, integer: true });
    const frameCount = option(ctx, 'frame-count', { default: 10, quick: 4, min: 1, integer: true });
    const rounds = option(ctx, 'rounds', { default: 2, quick: 1, min: 1, integer: true });
    const logs = option(ctx, 'server-logs', { default: false });
    const profile = option(ctx, 'profile', { default: '' });
    ensureCurl(ctx);

    const work = mkdtempSync(path.join(os.tmpdir(), 'archenland-bigfiles-'));
    const blendFile = path.join(work, 'big.blend');
    const frameFile = path.join(work, 'frame.png');
    const blendSize = sizeMB * MiB;
    const frameSize = frameMB * MiB;
    ctx.log(`writing a ${sizeMB} MB .blend and a ${frameMB} MB frame`);
    const blendSha = await writeFiller(blendFile, blendSize, BLEND_HEAD, BLEND_TAIL);
    const frameSha = await writeFiller(frameFile, frameSize, PNG_SIGNATURE, Buffer.alloc(0));

    const server = await ServerProcess.start(
      { max_upload_mb: sizeMB + 64 },
      { logs, profileDir: profile ? path.resolve(profile) : undefined },
    );
    const sink = await startSink(blendFile);
    const MBps = (bytes: number, ms: number) => bytes / MiB / (ms / 1000);
    const rate = (bytes: number, ms: number) => `${fmtS(ms)} (${MBps(bytes, ms).toFixed(0)} MB/s)`;
    const up = { cli: [] as number[], curlFarm: [] as number[], curlSink: [] as number[], curlStore: [] as number[] };
    const rss: Array<{ phase: string; before: number; peak: number; growth: number }> = [];
    let sims: SimulatedWorkers | undefined;
    try {
      // ---- 1. upload -------------------------------------------------------------
      // A small upload first, so one-time costs (modules loaded on first use, JIT) are not counted as growth.
      const warm = await uploadJobOf(server, fakeBlend(1024 * 1024));
      await postJson(server.httpUrl, server.token, apiPath('cancelJob', { id: warm }));
      for (let round = 0; round < rounds; round++) {
        ctx.log(`upload round ${round + 1}/${rounds}: CLI uploader → farm, curl → farm, curl → sink`);
        const cli = await measured(server, async () => {
          const start = performance.now();
          const job = await uploadJob(new ApiClient(server.httpUrl, server.token), blendFile, {}, () => undefined);
          const ms = performance.now() - start;
          await postJson(server.httpUrl, server.token, apiPath('cancelJob', { id: job.id }));
          return ms;
        });
        up.cli.push(cli.value);
        rss.push({ phase: `upload ${sizeMB} MB (CLI uploader, multipart), round ${round + 1}`, ...cli });
        const viaCurl = await measured(server, async () => {
          const r = await curl(['-H', `authorization: Bearer ${server.token}`, '-F', `file=@${blendFile}`, `${server.httpUrl}${apiPath('submitJob')}`]);
          if (r.status !== 201) throw new Error(`curl upload to the farm: HTTP ${r.status} ${r.body}`);
          await postJson(server.httpUrl, server.token, apiPath('cancelJob', { id: JSON.parse(r.body).id }));
          return r.seconds * 1000;
        });
        up.curlFarm.push(viaCurl.value);
        rss.push({ phase: `upload ${sizeMB} MB (curl -F), round ${round + 1}`, ...viaCurl });
        const r = await curl(['-T', blendFile, `${sink.url}/upload`]);
        if (r.status !== 200) throw new Error(`curl upload to the sink: HTTP ${r.status}`);
        up.curlSink.push(r.seconds * 1000);
        const stored = await curl(['-T', blendFile, `${sink.url}/store`]);
        if (stored.status !== 200 || JSON.parse(stored.body).sha256 !== blendSha) throw new Error(`curl upload to the storing sink: HTTP ${stored.status} ${stored.body}`);
        up.curlStore.push(stored.seconds * 1000);
      }

      // ---- 2. downloads ------------------------------------------------------------
      ctx.log(`${downloads} simultaneous downloads of the ${sizeMB} MB .blend: farm, then sink`);
      const down = await measured(server, () =>
        parallelDownloads(`${server.httpUrl}${apiPath('downloadBlend', { sha256: blendSha })}`, downloads, { authorization: `Bearer ${server.workerToken}` }, blendSize),
      );
      rss.push({ phase: `${downloads} simultaneous downloads of ${sizeMB} MB`, ...down });
      const downSink = await parallelDownloads(`${sink.url}/file`, downloads, {}, blendSize);

      // ---- 3. a stream of big frame uploads -----------------------------------------
      ctx.log(`${frameCount} frame uploads of ${frameMB} MB from one simulated worker: farm, then sink`);
      sims = await SimulatedWorkers.start({
        wsUrl: server.wsUrl,
        httpUrl: server.httpUrl,
        token: server.workerToken,
        count: 1,
        // The job has one frame more, which never finishes: the job is cancelled after the
        // timed uploads instead of encoding a video from fake frames.
        renderMs: (_job, frame) => (frame <= frameCount ? 0 : 3_600_000),
        scene: () => fakeScene(1, frameCount + 1),
        frame: { kind: 'file', file: frameFile, size: frameSize, sha256: frameSha },
        downloadBlends: false,
      });
      const frames = await measured(server, async () => {
        const job = await submitJob(server.httpUrl, server.token, fakeBlend());
        const done = await new Promise<void>((resolve) => sims!.onFrameAccepted(() => sims!.stats.uploadsAccepted === frameCount && resolve()));
        await done;
        await postJson(server.httpUrl, server.token, apiPath('cancelJob', { id: job.id }));
        if (sims!.stats.errors.length) throw new Error(sims!.stats.errors.join('; '));
        return sims!.stats.uploadMs.reduce((a, b) => a + b, 0);
      });
      rss.push({ phase: `${frameCount} × ${frameMB} MB frame uploads (PUT)`, ...frames });
      const framesSink = await sequentialPuts(`${sink.url}/frame`, frameFile, frameSize, frameCount);
      const framesStore = await sequentialPuts(`${sink.url}/store`, frameFile, frameSize, frameCount);

      // ---- figures -------------------------------------------------------------------
      const upCli = median(up.cli);
      const upCurlFarm = median(up.curlFarm);
      const upCurlSink = median(up.curlSink);
      const upCurlStore = median(up.curlStore);
      const downBytes = downloads * blendSize;
      const frameBytes = frameCount * frameSize;
      const worstGrowth = Math.max(...rss.map((r) => r.growth));
      const rows = [
        {
          figure: `upload ${sizeMB} MB: farm (curl -F) vs sink (curl -T): discarding / hashing+storing`,
          value: `${MBps(blendSize, upCurlFarm).toFixed(0)} vs ${MBps(blendSize, upCurlSink).toFixed(0)} / ${MBps(blendSize, upCurlStore).toFixed(0)} MB/s`,
        },
        { figure: `upload ${sizeMB} MB with the CLI's streaming uploader`, value: `${MBps(blendSize, upCli).toFixed(0)} MB/s` },
        {
          figure: `${downloads} simultaneous downloads: farm vs sink (aggregate)`,
          value: `${MBps(downBytes, down.value).toFixed(0)} vs ${MBps(downBytes, downSink).toFixed(0)} MB/s`,
        },
        {
          figure: `${frameMB} MB frame uploads: farm vs sink: discarding / hashing+storing`,
          value: `${MBps(frameBytes, frames.value).toFixed(0)} vs ${MBps(frameBytes, framesSink).toFixed(0)} / ${MBps(frameBytes, framesStore).toFixed(0)} MB/s`,
        },
        ...rss.filter((r, i) => i === rss.findIndex((x) => x.phase.split(',')[0] === r.phase.split(',')[0]) || r.growth === worstGrowth).map((r) => ({
          figure: `server RSS growth: ${r.phase}`,
          value: fmtMB(r.growth),
          target: '< 64 MB',
          pass: r.growth < 64 * MiB,
        })),
      ];
      const details = [
        `A ${sizeMB} MB file with a plain .blend header and closing ENDB block (random filler) and a ${frameMB} MB file with a`,
        'PNG signature. Server: a child process with `max_upload_mb` raised to fit; sink: a trivial Node HTTP server in',
        'its own process that discards request bodies, or hashes (SHA-256) and writes them to a temp file as the farm',
        "must, and streams the file on GET. Uploads: the CLI's streaming multipart uploader (src/cli/upload.ts) and",
        "`curl -F` to the farm, `curl -T` to the sink (curl's own timing), after one small warm-up upload.",
        `Downloads: ${downloads} concurrent GETs from the benchmark process, bytes counted and dropped. Frames: one`,
        'simulated worker (testkit/sim-worker.ts) uploading with the real PUT endpoint and headers, vs the same PUTs',
        `to the sink. RSS: the server's peak (kernel high-water mark, reset before each phase) minus its RSS just before.`,
        `Medians of ${rounds} round(s) for the uploads.`,
        '',
        mdTable(
          ['transfer', 'farm', 'sink, discarding', 'sink, hashing + storing', 'farm time / storing sink time'],
          [
            [`upload ${sizeMB} MB, curl`, rate(blendSize, upCurlFarm), rate(blendSize, upCurlSink), rate(blendSize, upCurlStore), fmtRatio(upCurlFarm / upCurlStore)],
            [`upload ${sizeMB} MB, CLI uploader`, rate(blendSize, upCli), '—', '—', fmtRatio(upCli / upCurlStore)],
            [`${downloads} × ${sizeMB} MB downloads`, rate(downBytes, down.value), rate(downBytes, downSink), '—', '—'],
            [`${frameCount} × ${frameMB} MB frame PUTs`, rate(frameBytes, frames.value), rate(frameBytes, framesSink), rate(frameBytes, framesStore), fmtRatio(frames.value / framesStore)],
          ],
        ),
        '',
        mdTable(
          ['phase', 'server RSS before', 'peak', 'growth'],
          rss.map((r) => [r.phase, fmtMB(r.before), fmtMB(r.peak), fmtMB(r.growth)]),
        ),
      ].join('\n');
      return { rows, details };
    } finally {
      await sims?.close();
      sink.child.kill();
      await server.stop();
      rmSync(work, { recursive: true, force: true });
    }
  },
};
