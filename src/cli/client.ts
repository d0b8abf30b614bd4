import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import path from 'node:path';
import { Transform } from 'node:stream';
import { text } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { loadSettings, ConfigError } from '../config/index.ts';
import { ApiError, CLIENT_HEADER } from '../protocol/index.ts';
import { CertificateError, explainTlsError, fingerprintOfPem, parseFingerprint, TlsClient, workerTls, type TlsTrust } from '../util/tls-client.ts';

export interface ClientOptions {
  server?: string;
  token?: string;
  config?: string;
  /** PEM file of the certificate authority that signed the server's certificate (--tls-ca). */
  tlsCa?: string;
  /** SHA-256 fingerprint of the server's certificate (--tls-fingerprint). */
  tlsFingerprint?: string;
}

/** Where the farm is, how to prove who we are, and whom to trust for an https:// server. */
export interface ResolvedClient {
  baseUrl: string;
  token?: string;
  trust: TlsTrust;
}

export { ApiError };

/**
 * Where the CLI finds the farm. Precedence, lowest first: the settings file (`--config`,
 * else ./settings.conf when present: a server's web_port and token file, or a worker's
 * address, web_port and token), environment (ARCHENLAND_SERVER, ARCHENLAND_TOKEN, and the
 * ARCHENLAND_* settings variables), flags (--server, --token).
 *
 * Trust for an https:// server comes from the highest of these that gives any: flags
 * (--tls-ca, --tls-fingerprint), environment (ARCHENLAND_TLS_CA, ARCHENLAND_TLS_FINGERPRINT),
 * or the settings file, but from the file only when the address does too: a server's
 * tls_cert (its certificate is pinned) or a worker's tls, tls_ca and tls_fingerprint.
 */
export function resolveClient(options: ClientOptions, env: NodeJS.ProcessEnv = process.env): ResolvedClient {
  const needLocal = options.server === undefined && !env.ARCHENLAND_SERVER;
  const needToken = options.token === undefined && !env.ARCHENLAND_TOKEN;
  const local: LocalServer = needLocal || needToken || options.config !== undefined ? localServer(options.config) : { url: '', trust: {} };
  const raw = options.server ?? (env.ARCHENLAND_SERVER || undefined) ?? local.url;
  const token = options.token ?? (env.ARCHENLAND_TOKEN || undefined) ?? local.token;
  const layers: Array<{ trust: TlsTrust; source: string }> = [
    { trust: { caFile: options.tlsCa, fingerprint: options.tlsFingerprint }, source: '--tls-fingerprint' },
    { trust: { caFile: env.ARCHENLAND_TLS_CA || undefined, fingerprint: env.ARCHENLAND_TLS_FINGERPRINT || undefined }, source: 'ARCHENLAND_TLS_FINGERPRINT' },
    // The file's certificate says nothing about a server named elsewhere.
    { trust: needLocal ? local.trust : {}, source: 'the settings file' },
  ];
  const chosen = layers.find(({ trust }) => trust.caFile !== undefined || trust.fingerprint !== undefined);
  const trust = chosen?.trust ?? {};
  if (trust.fingerprint !== undefined && parseFingerprint(trust.fingerprint) === null) {
    throw new ConfigError(`${chosen!.source}: "${trust.fingerprint}" is not a SHA-256 fingerprint: expected 64 hex digits, colons allowed`);
  }
  return { baseUrl: normaliseServer(raw, chosen !== undefined), token, trust };
}

/**
 * Accepts "host", "host:port" or a full URL. Without a scheme, https when a certificate
 * to trust was given (it only means something for https), else http.
 */
function normaliseServer(raw: string, trustGiven = false): string {
  const hasScheme = /^https?:\/\//i.test(raw);
  if (trustGiven && hasScheme && /^http:/i.test(raw)) {
    throw new ConfigError(`the server address ${raw} is plain http://, but a certificate to trust was given (--tls-ca, --tls-fingerprint or ARCHENLAND_TLS_*): use https://`);
  }
  const withScheme = hasScheme ? raw : `${trustGiven ? 'https' : 'http'}://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new ConfigError(`"${raw}" is not a server address: expected a URL such as http://render-server:8080`);
  }
  return url.href.replace(/\/+$/, '');
}

interface LocalServer {
  url: string;
  token?: string;
  trust: TlsTrust;
}

function firstLine(file: string): string | undefined {
  return existsSync(file) ? readFileSync(file, 'utf8').trim() || undefined : undefined;
}

function localServer(configFile?: string): LocalServer {
  // A file named with --config must exist; the default ./settings.conf may be absent.
  if (configFile !== undefined && !existsSync(configFile)) throw new ConfigError(`${configFile}: settings file not found`);
  const file = configFile ?? (existsSync('settings.conf') ? 'settings.conf' : undefined);
  try {
    // Read as `archenland start` reads it: a one-machine file also holds its local worker's keys.
    const settings = loadSettings('start', { file: file ?? false, flags: {} });
    // The server's first user token, else the legacy farm token of an older data folder.
    const token = settings.token ?? firstLine(path.join(settings.data_dir, 'user-token')) ?? firstLine(path.join(settings.data_dir, 'farm-token'));
    const host = ['0.0.0.0', '::', ''].includes(settings.bind) ? '127.0.0.1' : settings.bind;
    const scheme = settings.tls_cert === undefined ? 'http' : 'https';
    return { url: `${scheme}://${host.includes(':') ? `[${host}]` : host}:${settings.web_port}`, token, trust: serverCertificatePin(settings.tls_cert) };
  } catch (error) {
    // A worker's settings.conf is not a server's: use its address and ports instead.
    if (!(error instanceof ConfigError) || file === undefined) throw error;
    let worker;
    try {
      worker = loadSettings('worker', { file, flags: {} });
    } catch {
      throw error; // neither: report the problem as a server's (or `start`'s) settings file
    }
    const { secure, trust } = workerTls(worker);
    const host = worker.address.includes(':') ? `[${worker.address}]` : worker.address;
    return { url: `${secure ? 'https' : 'http'}://${host}:${worker.web_port}`, token: worker.token, trust };
  }
}

/**
 * Trust for the server whose settings file this is: exactly its own certificate, pinned by
 * fingerprint. Not the file as a CA: the CLI connects to 127.0.0.1 or the bind address,
 * which a certificate made for the machine's name does not list, and a certificate signed
 * by someone else is no trust anchor by itself.
 */
function serverCertificatePin(certFile: string | undefined): TlsTrust {
  if (certFile === undefined) return {};
  try {
    return { fingerprint: fingerprintOfPem(readFileSync(certFile)) };
  } catch (error) {
    throw new ConfigError(`cannot read the server's certificate ${certFile} (tls_cert) to trust it: ${(error as Error).message}; or pass --tls-ca or --tls-fingerprint`, { file: certFile, key: 'tls_cert' });
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
    /** http, or https with the trust from resolveClient; watch.ts and upload.ts use it too. */
    readonly transport: TlsClient = new TlsClient(),
  ) {}

  headers(): Record<string, string> {
    const headers: Record<string, string> = { [CLIENT_HEADER]: 'cli' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    return headers;
  }

  get<T>(pathName: string): Promise<T> {
    return this.request<T>('GET', pathName);
  }

  post<T>(pathName: string, body?: unknown): Promise<T> {
    return this.request<T>('POST', pathName, body);
  }

  put<T>(pathName: string, body: unknown): Promise<T> {
    return this.request<T>('PUT', pathName, body);
  }

  patch<T>(pathName: string, body: unknown): Promise<T> {
    return this.request<T>('PATCH', pathName, body);
  }

  delete(pathName: string): Promise<void> {
    return this.request<void>('DELETE', pathName);
  }

  private async send(method: string, pathName: string, body?: unknown): Promise<IncomingMessage> {
    const headers = this.headers();
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: IncomingMessage;
    try {
      response = await this.transport.send(new URL(`${this.baseUrl}${pathName}`), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (error) {
      throw this.connectionError(error as Error, 'cannot reach the server at');
    }
    const status = response.statusCode ?? 0;
    if (status < 200 || status > 299) {
      throw ApiError.fromAnswer(status, await text(response).catch(() => ''), response.statusMessage);
    }
    return response;
  }

  /**
   * What to throw when no answer came: a refused certificate is a configuration error (exit
   * 2), since it will not change until the trust settings do; anything else is "unreachable"
   * (exit 3, try again later).
   */
  connectionError(error: Error, what: string): Error {
    const explained = explainTlsError(error);
    if (explained instanceof CertificateError) return new ConfigError(`refused the server at ${this.baseUrl}: ${explained.message}`);
    return new ApiError(`${what} ${this.baseUrl}: ${explained.message}`, 0);
  }

  private async request<T>(method: string, pathName: string, body?: unknown): Promise<T> {
    const response = await this.send(method, pathName, body);
    const raw = await text(response);
    if (response.statusCode === 204) return undefined as T;
    return JSON.parse(raw) as T;
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
    const name = fileNameOf(response.headers['content-disposition'] ?? null) ?? fallbackName;
    const file = path.join(dir, name);
    const partial = `${file}.partial`;
    const length = Number(response.headers['content-length']);
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
      await pipeline(response, counter, createWriteStream(partial));
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
