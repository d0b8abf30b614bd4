/**
 * A farm of idle machines: N simulated workers (real WebSocket clients speaking the real
 * protocol, testkit/sim-worker.ts) connect to a real server in a child process and stay
 * idle. What they cost the server while nothing renders: memory per connected worker, and
 * CPU per heartbeat round (the server pings every worker each heartbeat_timeout_s / 3).
 */
import { performance } from 'node:perf_hooks';
import { apiPath, type Worker } from '../src/protocol/index.ts';
import { getJson } from '../testkit/api.ts';
import { fakeScene, frameFromBuffer, TINY_PNG } from '../testkit/fakes.ts';
import { SimulatedWorkers } from '../testkit/sim-worker.ts';
import { fmtInt, fmtMB, fmtMs, fmtSpread, mdTable, sleep, type BenchContext, type BenchResult, type Benchmark } from './lib/harness.ts';
import { option } from './lib/options.ts';
import { ServerProcess } from './lib/server-process.ts';

export const idleWorkers: Benchmark = {
  name: 'idle-workers',
  title: 'Idle farm: connected workers doing nothing',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const workers = option(ctx, 'workers', { default: 5000, quick: 200, min: 1, integer: true });
    const rounds = option(ctx, 'rounds', { default: 6, quick: 2, min: 1, integer: true });
    const heartbeatS = option(ctx, 'heartbeat-s', { default: 30, quick: 3, min: 1, integer: true });
    const roundMs = Math.max(250, Math.floor((heartbeatS * 1000) / 3));

    const server = await ServerProcess.start({ heartbeat_timeout_s: heartbeatS });
    let sims: SimulatedWorkers | undefined;
    try {
      await sleep(500);
      await server.stats({ gc: true });
      const rssEmpty = server.rss();

      ctx.log(`connecting ${fmtInt(workers)} simulated workers`);
      const connectStart = performance.now();
      sims = await SimulatedWorkers.start({
        wsUrl: server.wsUrl,
        httpUrl: server.httpUrl,
        token: server.workerToken,
        count: workers,
        renderMs: () => 1000,
        scene: () => fakeScene(1, 1),
        frame: frameFromBuffer(TINY_PNG),
      });
      const connectMs = performance.now() - connectStart;
      const listed = await getJson<Worker[]>(server.httpUrl, server.token, apiPath('listWorkers'));
      const connected = listed.filter((w) => w.state === 'idle').length;

      // Settle (the connections' own start-up work), then measure whole heartbeat rounds.
      await sleep(roundMs);
      await server.stats({ gc: true });
      const rssConnected = server.rss();
      const cpuPerRound: number[] = [];
      const loopP99: number[] = [];
      for (let round = 0; round < rounds; round++) {
        const before = await server.stats({ resetLoop: true });
        await sleep(roundMs);
        const after = await server.stats();
        cpuPerRound.push((after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system) / 1000);
        loopP99.push(after.loop.p99);
        ctx.log(`  round ${round + 1}/${rounds}: ${fmtMs(cpuPerRound.at(-1)!)} CPU, server RSS ${fmtMB(server.rss())}`);
      }
      await server.stats({ gc: true });
      const rssAfter = server.rss();
      const stillConnected = (await getJson<Worker[]>(server.httpUrl, server.token, apiPath('listWorkers'))).filter((w) => w.state === 'idle').length;

      const perWorkerKb = ((rssConnected - rssEmpty) / workers / 1024).toFixed(1);
      const rows = [
        { figure: `${fmtInt(workers)} idle workers connected (of ${fmtInt(workers)})`, value: `${fmtInt(connected)} in ${fmtMs(connectMs)}`, target: 'all', pass: connected === workers && stillConnected === workers },
        { figure: 'server RSS: no worker / all connected / after the rounds', value: `${fmtMB(rssEmpty)} / ${fmtMB(rssConnected)} / ${fmtMB(rssAfter)}` },
        { figure: 'server memory per connected worker', value: `${perWorkerKb} KB` },
        { figure: `server CPU per heartbeat round (${fmtMs(roundMs)}), median (min–max)`, value: fmtSpread(cpuPerRound, fmtMs) },
        { figure: 'server CPU per worker per round', value: fmtSpread(cpuPerRound.map((ms) => (ms * 1000) / workers), (us) => `${us.toFixed(1)} µs`) },
      ];
      const details = [
        `${fmtInt(workers)} simulated workers (testkit/sim-worker.ts: real WebSocket clients, the real hello, welcome and`,
        "`ready`) connect to a real server in a child process and stay idle. The server's heartbeat pings every",
        `worker each ${fmtMs(roundMs)} (heartbeat_timeout_s = ${heartbeatS}, pinged every third of it); the clients answer the`,
        "pings (the ws library does so itself). CPU is the server process's own user + system time over each round,",
        `measured ${rounds} times after a settling round; RSS after a full GC. The clients share the machine's 2 cores.`,
        '',
        mdTable(
          ['round', 'server CPU', 'event-loop p99'],
          cpuPerRound.map((ms, i) => [i + 1, fmtMs(ms), fmtMs(loopP99[i]!)]),
        ),
      ].join('\n');
      return { rows, details };
    } finally {
      await sims?.close();
      await server.stop();
    }
  },
};
