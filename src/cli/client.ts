import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { loadSettings, ConfigError } from '../config/index.ts';
import { CLIENT_HEADER } from '../protocol/index.ts';

export interface ClientOptions {
  server?: string;
  token?: string;
  config?: string;
}

/** Thrown for answers scripts should see as failure; the message is the server's own. Status 0: unreachable. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly statusCode: number,
  ) {
    super(message);
  }
}

/**
 * Where the CLI finds the farm. Precedence, lowest first: the settings file (`--config`,
 * else ./settings.conf when present: a server's web_port and token file, or a worker's
 * address, web_port and token), environment (ARCHENLAND_SERVER, ARCHENLAND_TOKEN, and the
 * ARCHENLAND_* settings variables), flags (--server, --token).
 */
export function resolveClient(options: ClientOptions, env: NodeJS.ProcessEnv = process.env): { baseUrl: string; token?: string } {
  const needLocal = options.server === undefined && !env.ARCHENLAND_SERVER;
  const needToken = options.token === undefined && !env.ARCHENLAND_TOKEN;
  const local = needLocal || needToken || options.config !== undefined ? localServer(options.config) : { url: '' };
  const raw = options.server ?? (env.ARCHENLAND_SERVER || undefined) ?? local.url;
  const token = options.token ?? (env.ARCHENLAND_TOKEN || undefined) ?? local.token;
  return { baseUrl: normaliseServer(raw), token };
}

/** Accepts "host", "host:port" or a full URL. */
function normaliseServer(raw: string): string {
  const withScheme = /^https?:\/\//i.test(raw) ? raw : `http://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new ConfigError(`"${raw}" is not a server address: expected a URL such as http://render-server:8080`);
  }
  return url.href.replace(/\/+$/, '');
}

function localServer(configFile?: string): { url: string; token?: string } {
  // A file named with --config must exist; the default ./settings.conf may be absent.
  if (configFile !== undefined && !existsSync(configFile)) throw new ConfigError(`${configFile}: settings file not found`);
  const file = configFile ?? (existsSync('settings.conf') ? 'settings.conf' : undefined);
  try {
    const settings = loadSettings('server', { file: file ?? false, flags: {} });
    const tokenFile = path.join(settings.data_dir, 'farm-token');
    const token = settings.token ?? (existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() : undefined);
    const host = ['0.0.0.0', '::', ''].includes(settings.bind) ? '127.0.0.1' : settings.bind;
    return { url: `http://${host.includes(':') ? `[${host}]` : host}:${settings.web_port}`, token };
  } catch (error) {
    // A worker's settings.conf is not a server's: use its address and ports instead.
    if (!(error instanceof ConfigError) || file === undefined) throw error;
    let worker;
    try {
      worker = loadSettings('worker', { file, flags: {} });
    } catch {
      throw error; // neither: report the problem as a server settings file
    }
    return { url: `http://${worker.address}:${worker.web_port}`, token: worker.token };
  }
}

export interface DownloadResult {
  file: string;
  bytes: number;
}

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    readonly token?: string,
  ) {}

  headers(): Record<string, string> {
    const headers: Record<string, string> = { [CLIENT_HEADER]: 'cli' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    return headers;
  }

  get<T>(pathName: string): Promise<T> {
    return this.request<T>('GET', pathName);
  }

  post<T>(pathName: string): Promise<T> {
    return this.request<T>('POST', pathName);
  }

  patch<T>(pathName: string, body: unknown): Promise<T> {
    return this.request<T>('PATCH', pathName, body);
  }

  delete(pathName: string): Promise<void> {
    return this.request<void>('DELETE', pathName);
  }

  private async send(method: string, pathName: string, body?: unknown): Promise<Response> {
    const headers = this.headers();
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(`${this.baseUrl}${pathName}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (error) {
      throw new ApiError(`cannot reach the server at ${this.baseUrl}: ${(error as Error & { cause?: Error }).cause?.message ?? (error as Error).message}`, 0);
    }
    if (!response.ok) {
      const answer = (await response.json().catch(() => ({}))) as { error?: string };
      throw new ApiError(answer.error ?? `HTTP ${response.status} ${response.statusText}`, response.status);
    }
    return response;
  }

  private async request<T>(method: string, pathName: string, body?: unknown): Promise<T> {
    const response = await this.send(method, pathName, body);
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }

  /**
   * Streams a file from the server into `dir`, named as the server names it (or
   * `fallbackName`), through a `.partial` file so an interrupted download never looks
   * complete. `onProgress` gets bytes so far and the total when the server sent one.
   */
  async download(
    pathName: string,
    dir: string,
    fallbackName: string,
    onProgress: (received: number, total: number | null) => void,
  ): Promise<DownloadResult> {
    const response = await this.send('GET', pathName);
    const name = fileNameOf(response.headers.get('content-disposition')) ?? fallbackName;
    const file = path.join(dir, name);
    const partial = `${file}.partial`;
    const length = Number(response.headers.get('content-length'));
    const total = Number.isFinite(length) && length > 0 ? length : null;
    let received = 0;
    onProgress(0, total);
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        received += chunk.length;
        onProgress(received, total);
        done(null, chunk);
      },
    });
    try {
      await pipeline(Readable.fromWeb(response.body! as import('node:stream/web').ReadableStream), counter, createWriteStream(partial));
    } catch (error) {
      await rm(partial, { force: true });
      throw new ApiError(`download of ${pathName} broke off after ${received} bytes: ${(error as Error).message}`, 0);
    }
    if (total !== null && received !== total) {
      await rm(partial, { force: true });
      throw new ApiError(`download of ${pathName} is incomplete: ${received} of ${total} bytes`, 0);
    }
    await rename(partial, file);
    return { file, bytes: received };
  }
}

/** The file name from Content-Disposition, reduced to a safe base name. */
function fileNameOf(header: string | null): string | undefined {
  const match = /filename="?([^";]+)"?/i.exec(header ?? '');
  if (!match) return undefined;
  const base = path.basename(match[1]!.replace(/\\/g, '/'));
  const safe = base.replace(/[^\w.\-]/g, '_');
  return safe && safe !== '.' && safe !== '..' ? safe : undefined;
}
