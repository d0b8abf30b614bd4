import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { loadSettings, ConfigError } from '../config/index.ts';
import { CLIENT_HEADER } from '../protocol/index.ts';

export interface ClientOptions {
  server?: string;
  token?: string;
  config?: string;
}

/** Thrown for answers scripts should see as failure; the message is the server's own. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly statusCode: number,
  ) {
    super(message);
  }
}

/**
 * Where the CLI finds the farm: --server and --token, then ARCHENLAND_SERVER and
 * ARCHENLAND_TOKEN, then the server's settings.conf and token file in this folder, so a
 * CLI run where the server runs needs neither.
 */
export function resolveClient(options: ClientOptions): { baseUrl: string; token?: string } {
  const local = localServer(options.config);
  const baseUrl = (options.server ?? process.env.ARCHENLAND_SERVER ?? local.url).replace(/\/+$/, '');
  const token = options.token ?? process.env.ARCHENLAND_TOKEN ?? local.token;
  return { baseUrl, token };
}

function localServer(configFile?: string): { url: string; token?: string } {
  const file = configFile ?? 'settings.conf';
  try {
    const settings = loadSettings('server', { file: existsSync(file) ? file : undefined, flags: {} });
    const tokenFile = path.join(settings.data_dir, 'farm-token');
    const token = settings.token ?? (existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() : undefined);
    return { url: `http://127.0.0.1:${settings.web_port}`, token };
  } catch (error) {
    // A worker's settings.conf is not a server's: fall back to its address and ports.
    if (!(error instanceof ConfigError)) throw error;
    const worker = loadSettings('worker', { file, flags: {} });
    return { url: `http://${worker.address}:${worker.web_port}`, token: worker.token };
  }
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

  async get<T>(pathName: string): Promise<T> {
    return this.request<T>('GET', pathName);
  }

  async post<T>(pathName: string): Promise<T> {
    return this.request<T>('POST', pathName);
  }

  private async request<T>(method: string, pathName: string): Promise<T> {
    let response: Response;
    try {
      response = await fetch(`${this.baseUrl}${pathName}`, { method, headers: this.headers() });
    } catch (error) {
      throw new ApiError(`cannot reach the server at ${this.baseUrl}: ${(error as Error & { cause?: Error }).cause?.message ?? (error as Error).message}`, 0);
    }
    const body = (await response.json().catch(() => ({}))) as T & { error?: string };
    if (!response.ok) throw new ApiError(body.error ?? `HTTP ${response.status}`, response.status);
    return body;
  }
}
