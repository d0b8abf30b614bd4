import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, Socket, type AddressInfo, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { CLIENT_HEADER, type Job, type JobDetail, type Worker } from '../../src/protocol/index.ts';
import { BLENDER } from '../../testkit/scenes.ts';

const BIN = fileURLToPath(new URL('../../bin/archenland.js', import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the real `archenland` command against a server (its URL and a user token given as
 * flags), in `cwd` when given; resolves with its exit code and output.
 */
export function runCli(server: { httpUrl: string; tokens: { user: string | null } }, args: string[], opts: { cwd?: string } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args, '--server', server.httpUrl, '--token', server.tokens.user!], { cwd: opts.cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

/**
 * `count` different free ports. All are held open until each has one: ports asked for one
 * after another may come back the same, and a server given it twice fails with EADDRINUSE.
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise<Server>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => resolve(server));
    })),
  );
  const ports = servers.map((server) => (server.address() as AddressInfo).port);
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

/**
 * A real `archenland` process (server or worker) whose JSON log lines are kept, so
 * tests can wait for and count what it did.
 */
export class FarmProcess {
  readonly logs: Array<Record<string, any>> = [];
  readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;

  constructor(args: string[], env: Record<string, string> = {}) {
    this.child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, ARCHENLAND_LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let partial = '';
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        try {
          this.logs.push(JSON.parse(line));
        } catch {
          this.logs.push({ msg: line });
        }
      }
    });
    this.child.stdout!.resume();
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  count(msg: string, where: (line: Record<string, any>) => boolean = () => true): number {
    return this.logs.filter((l) => l.msg === msg && where(l)).length;
  }

  async waitForLog(msg: string, timeoutMs = 60_000, where: (line: Record<string, any>) => boolean = () => true): Promise<void> {
    const tail = () => this.logs.slice(-5).map((l) => JSON.stringify(l)).join('\n');
    await until(() => this.count(msg, where) > 0, timeoutMs, `log "${msg}"`).catch((error: Error) => {
      throw new Error(`${error.message}; exit ${this.child.exitCode ?? this.child.signalCode}; last lines:\n${tail()}`);
    });
  }

  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** Resolves with the exit code once the process has ended by itself. */
  exit(): Promise<number | null> {
    return this.exited;
  }

  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

export interface ServerPorts {
  port: number;
  webPort: number;
}

export function startServerProcess(dataDir: string, ports: ServerPorts, settings: Record<string, string> = {}): FarmProcess {
  const env = Object.fromEntries(Object.entries(settings).map(([k, v]) => [`ARCHENLAND_${k.toUpperCase()}`, v]));
  return new FarmProcess(
    ['server', '--bind', '127.0.0.1', '--port', String(ports.port), '--web-port', String(ports.webPort), '--data-dir', dataDir],
    env,
  );
}

export function startWorkerProcess(cacheDir: string, ports: ServerPorts, token: string, name: string): FarmProcess {
  // The token in the environment, as the docs advise: a command line shows in every process list.
  return new FarmProcess(
    [
      'worker', '--address', '127.0.0.1', '--port', String(ports.port), '--web-port', String(ports.webPort),
      '--name', name, '--cache-dir', cacheDir, '--threads', '1', '--blender-path', BLENDER,
    ],
    { ARCHENLAND_TOKEN: token },
  );
}

/** A small client of the real API for tests that drive processes from outside. */
export class Api {
  constructor(readonly baseUrl: string) {}

  async json<T>(path: string, init: RequestInit = {}): Promise<T> {
    const response = await fetch(`${this.baseUrl}${path}`, { ...init, headers: { [CLIENT_HEADER]: 'test', ...init.headers } });
    const body = await response.json();
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${JSON.stringify(body)}`);
    return body as T;
  }

  job(id: string) {
    return this.json<JobDetail>(`/api/jobs/${id}`);
  }

  workers() {
    return this.json<Worker[]>('/api/workers');
  }

  async submit(file: Blob, fields: Record<string, string> = {}): Promise<Job> {
    const form = new FormData();
    for (const [k, v] of Object.entries(fields)) form.append(k, v);
    form.append('file', file, 'scene.blend');
    return this.json<Job>('/api/jobs', { method: 'POST', body: form });
  }

  async waitForJob(id: string, states: string[], timeoutMs = 120_000): Promise<JobDetail> {
    let last: JobDetail | undefined;
    await until(async () => {
      last = await this.job(id).catch(() => undefined);
      return last !== undefined && states.includes(last.state);
    }, timeoutMs, `job ${id} to be ${states.join('/')} (last: ${last?.state})`);
    return last!;
  }
}

export async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * A TCP relay on loopback between a worker and the server, which a test can cut (every
 * connection dropped, new ones refused) and mend, like a network cable pulled and put back.
 */
export class CuttableLink {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(private readonly targetPort: number) {}

  async open(port = 0): Promise<number> {
    this.server = createServer((client) => {
      const upstream = new Socket();
      upstream.connect(this.targetPort, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
    return this.port;
  }

  async cut(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server = null;
  }

  async mend(): Promise<void> {
    await this.open(this.port);
  }
}
