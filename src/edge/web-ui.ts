import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { apiPath } from '../protocol/index.ts';
import { on } from './routing.ts';

const WEB_ROOT = fileURLToPath(new URL('../../web/dist/', import.meta.url));

/**
 * The web UI's files, open to all (the page asks for a login itself), sent with a
 * Content-Security-Policy: scripts and styles from this server only, the live connection
 * to this host's WebSocket port, and no framing by other pages (clickjacking).
 */
export function registerWebUi(app: FastifyInstance<any, any, any, any, any>, webRoot = WEB_ROOT): void {
  void app.register(async (web) => {
    // Runs after the app's own onRoute hook, on the same config object.
    web.addHook('onRoute', (route) => {
      route.config = Object.assign(route.config ?? {}, { access: 'open' as const });
    });
    if (!existsSync(webRoot)) {
      on(web, 'webUi', async () => ({ name: 'Archenland', api: apiPath('listJobs'), note: 'the web UI is not built (npm run build:web)' }));
      return;
    }
    const policy = contentSecurityPolicy(path.join(webRoot, 'index.html'));
    await web.register(fastifyStatic, {
      root: webRoot,
      prefix: '/',
      setHeaders: (response) => {
        response.header('content-security-policy', policy);
        response.header('x-content-type-options', 'nosniff');
        response.header('referrer-policy', 'same-origin');
      },
    });
  });
}

/** The policy, allowing index.html's one inline script by its hash. */
export function contentSecurityPolicy(indexHtml: string): string {
  const html = existsSync(indexHtml) ? readFileSync(indexHtml, 'utf8') : '';
  const inline = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map(
    (match) => `'sha256-${createHash('sha256').update(match[1]!).digest('base64')}'`,
  );
  return [
    "default-src 'self'",
    `script-src 'self' ${inline.join(' ')}`.trim(),
    // Preact sets style attributes; no script can come in through them.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    // The live connection goes to the WebSocket port, another origin than the page's.
    "connect-src 'self' ws: wss:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; ');
}
