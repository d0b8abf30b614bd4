import { readFileSync } from 'node:fs';
import type http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { ConfigError, type ServerSettings } from '../config/index.ts';
import { fingerprintOfPem } from '../util/tls-client.ts';

/** The server's certificate and key (settings tls_cert and tls_key), checked to belong together. */
export interface ServerTls {
  cert: Buffer;
  key: Buffer;
  /** SHA-256 fingerprint of the server's own certificate, for workers and the CLI to pin. */
  fingerprint: string;
}

/**
 * Reads tls_cert and tls_key: null when neither is set (plain HTTP and WS). Throws
 * ConfigError when only one is set, a file cannot be read, or the key does not fit the
 * certificate, so a broken setup fails at start and not at the first connection.
 */
export function loadServerTls(settings: Pick<ServerSettings, 'tls_cert' | 'tls_key'>): ServerTls | null {
  const { tls_cert: certFile, tls_key: keyFile } = settings;
  if (certFile === undefined && keyFile === undefined) return null;
  if (certFile === undefined || keyFile === undefined) {
    const [given, missing] = certFile === undefined ? ['tls_key', 'tls_cert'] : ['tls_cert', 'tls_key'];
    throw new ConfigError(`${given} is set but ${missing} is not: HTTPS needs both the certificate (tls_cert) and its private key (tls_key)`, { key: missing });
  }
  const cert = readPem(certFile, 'tls_cert');
  const key = readPem(keyFile, 'tls_key');
  let fingerprint: string;
  try {
    fingerprint = fingerprintOfPem(cert);
  } catch {
    throw new ConfigError(`${certFile} (tls_cert) holds no PEM certificate: expected a file starting with -----BEGIN CERTIFICATE-----`, { file: certFile, key: 'tls_cert' });
  }
  try {
    tls.createSecureContext({ cert, key });
  } catch (error) {
    throw new ConfigError(`${keyFile} (tls_key) is not the private key of ${certFile} (tls_cert): ${(error as Error).message}`, { file: keyFile, key: 'tls_key' });
  }
  return { cert, key, fingerprint };
}

function readPem(file: string, key: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new ConfigError(`cannot read ${key} ${file}: ${(error as Error).message}`, { file, key });
  }
}

/** An HTTPS server with this certificate, not yet listening: the WebSocket server's, for WSS. */
export function createHttpsServer(serverTls: ServerTls): https.Server {
  return https.createServer({ cert: serverTls.cert, key: serverTls.key });
}

/** Stops accepting connections and resolves once the open ones have ended; idle keep-alive ones are closed now. */
export function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}
