import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import type { ClientOptions as WebSocketOptions } from 'ws';
import { ConfigError } from '../config/errors.ts';

/*
 * How the worker and the CLI reach the server: plain for http:// and ws:// addresses, TLS
 * with the configured trust for https:// and wss:// (worker settings tls_ca and
 * tls_fingerprint; CLI --tls-ca and --tls-fingerprint).
 *
 * Requests go through node:https, not fetch: Node 20's fetch accepts a custom CA or
 * identity check only through a `dispatcher` from the separate undici package, whose
 * version would have to track the one bundled with Node. https.Agent is in the standard
 * library, and ws takes the same connection function, so one check guards the API calls,
 * the .blend downloads, the frame uploads and the WebSocket.
 */

/**
 * Whether a worker (or the CLI reading a worker's settings.conf) speaks https and wss, and
 * whom it trusts. tls_ca or tls_fingerprint imply tls: trusting a certificate only makes
 * sense for a connection that checks one, and silently staying in clear text would not.
 */
export function workerTls(settings: { tls: boolean; tls_ca?: string; tls_fingerprint?: string }): { secure: boolean; trust: TlsTrust } {
  return {
    secure: settings.tls || settings.tls_ca !== undefined || settings.tls_fingerprint !== undefined,
    trust: { caFile: settings.tls_ca, fingerprint: settings.tls_fingerprint },
  };
}

/** Whom to trust. Neither field set: the system's certificate authorities. */
export interface TlsTrust {
  /** PEM file of the certificate authority that signed the server's certificate (or the self-signed certificate itself). */
  caFile?: string;
  /** SHA-256 fingerprint of the one certificate to accept, whoever signed it. When set, caFile is not read. */
  fingerprint?: string;
}

/** The server's certificate was refused: retrying cannot help until the settings or the certificate change. */
export class CertificateError extends Error {
  override name = 'CertificateError';
}

/** What to do instead, shown after every refusal. */
const TRUST_HINT =
  "give the certificate authority that signed it (worker setting tls_ca, CLI --tls-ca) or pin the certificate's SHA-256 fingerprint " +
  '(tls_fingerprint, --tls-fingerprint; `archenland server` prints it at start)';

/** OpenSSL's chain verification failures, as Node reports them in `error.code`. */
const UNTRUSTED_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'PATH_LENGTH_EXCEEDED',
  'CERT_CHAIN_TOO_LONG',
  'HOSTNAME_MISMATCH',
]);

/**
 * A fingerprint as Node prints `cert.fingerprint256` ("AB:CD:…", upper case), from any of
 * the forms people paste: with or without colons, any case, openssl's "SHA256 Fingerprint="
 * or the "sha256//" prefix. Null when it is not 32 bytes of hex.
 */
export function parseFingerprint(text: string): string | null {
  const hex = text
    .trim()
    .replace(/^(?:sha256\/\/|sha256 fingerprint=)/i, '')
    .replaceAll(':', '');
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) return null;
  return hex.toUpperCase().match(/../g)!.join(':');
}

/** The SHA-256 fingerprint of the first certificate in a PEM file (the server's own, in a chain file). */
export function fingerprintOfPem(pem: string | Buffer): string {
  return new X509Certificate(pem).fingerprint256;
}

export class TlsClient {
  private readonly ca: Buffer | undefined;
  private readonly pin: string | undefined;
  private readonly agent = new https.Agent({ keepAlive: true });

  /** Reads the CA file once, here. Throws ConfigError for an unreadable file or a bad fingerprint. */
  constructor(trust: TlsTrust = {}) {
    if (trust.fingerprint !== undefined) {
      const pin = parseFingerprint(trust.fingerprint);
      if (pin === null) {
        throw new ConfigError(`tls_fingerprint (--tls-fingerprint) "${trust.fingerprint}" is not a SHA-256 fingerprint: expected 64 hex digits, colons allowed`, { key: 'tls_fingerprint' });
      }
      this.pin = pin;
    } else if (trust.caFile !== undefined) {
      this.ca = readCertificateFile(trust.caFile);
    }
    // Every https request goes through the same check as the WebSocket (https.Agent's own
    // createConnection would only cache TLS sessions, which this client does not need).
    this.agent.createConnection = (options) => this.connect(options as tls.ConnectionOptions);
  }

  /**
   * Opens a TLS connection that is destroyed, before a byte of the request leaves, unless
   * the server's certificate is trusted. An arrow function: https.Agent and ws call it unbound.
   */
  readonly connect = (options: tls.ConnectionOptions): tls.TLSSocket => {
    const host = options.host ?? 'localhost';
    // As ws and https.Agent do: SNI carries host names only, never an IP address (RFC 6066);
    // and ws passes the request's path, which tls.connect would take for a Unix socket.
    const base = { ...options, path: undefined, servername: options.servername || (net.isIP(host) ? '' : host) };
    if (this.pin === undefined) {
      // Node's own checks: the chain against `ca` (or the system's CAs) and the host name.
      return tls.connect({ ...base, ca: this.ca, rejectUnauthorized: true });
    }
    const expected = this.pin;
    // Node calls checkServerIdentity only for a chain that verified, and a pinned certificate
    // is usually self-signed, so chain verification is off and the pin is checked here.
    // 'secureConnect' fires as the handshake completes, before data queued on the socket is
    // written, and this listener is the first; destroying the socket here is what Node itself
    // does for rejectUnauthorized.
    const socket = tls.connect({ ...base, rejectUnauthorized: false });
    socket.once('secureConnect', () => {
      const actual = socket.getPeerCertificate().fingerprint256;
      if (actual !== expected) {
        socket.destroy(new CertificateError(`the server's certificate has fingerprint ${actual ?? '(none)'}, expected ${expected}`));
      }
    });
    return socket;
  };

  /** http.request or https.request by the URL's scheme; https with this trust. */
  request(url: URL, options: http.RequestOptions): http.ClientRequest {
    if (url.protocol === 'https:') return https.request(url, { ...options, agent: this.agent });
    if (url.protocol === 'http:') return http.request(url, options);
    throw new TypeError(`unsupported URL scheme ${url.protocol} in ${url.href}`);
  }

  /**
   * Sends a request with an optional small body and resolves with the response, whose body
   * is left to the caller. Refused certificates reject with a CertificateError.
   */
  send(url: URL, options: http.RequestOptions & { body?: string | Buffer } = {}): Promise<http.IncomingMessage> {
    const { body, ...requestOptions } = options;
    return new Promise((resolve, reject) => {
      const request = this.request(url, requestOptions);
      if (body !== undefined) request.setHeader('content-length', Buffer.byteLength(body));
      request.on('response', resolve);
      request.on('error', (error) => reject(explainTlsError(error)));
      request.end(body);
    });
  }

  /** Options for `new WebSocket(url, …)`: this trust for wss://, nothing for ws://. */
  webSocketOptions(url: string): WebSocketOptions {
    return url.startsWith('wss:') ? { createConnection: this.connect as WebSocketOptions['createConnection'] } : {};
  }
}

/** PEM certificates from a file, checked to hold at least one certificate. Throws ConfigError. */
function readCertificateFile(file: string): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(file);
  } catch (error) {
    throw new ConfigError(`cannot read the certificate authority file ${file} (tls_ca, --tls-ca): ${(error as Error).message}`, { file, key: 'tls_ca' });
  }
  try {
    fingerprintOfPem(pem);
  } catch {
    throw new ConfigError(`${file} (tls_ca, --tls-ca) holds no PEM certificate: expected a file starting with -----BEGIN CERTIFICATE-----`, { file, key: 'tls_ca' });
  }
  return pem;
}

/**
 * The same error, or a CertificateError that says in plain words why the server was not
 * trusted and what to set instead. Other errors come back unchanged.
 */
export function explainTlsError(error: Error): Error {
  if (error instanceof CertificateError) return error;
  const code = (error as NodeJS.ErrnoException).code ?? '';
  if (UNTRUSTED_CODES.has(code)) {
    return new CertificateError(`the server's certificate is not trusted (${error.message}): ${TRUST_HINT}`, { cause: error });
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return new CertificateError(`the server's certificate is not for this address (${error.message}): connect by a name it lists, or pin it with tls_fingerprint / --tls-fingerprint`, { cause: error });
  }
  if (/wrong version number|packet length too long|unknown protocol/i.test(error.message)) {
    return new Error(`the server does not speak TLS on this port (${error.message}): use http:// (or tls = false), or give the server tls_cert and tls_key`, { cause: error });
  }
  return error;
}
