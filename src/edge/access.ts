import type { IncomingHttpHeaders } from 'node:http';
import os from 'node:os';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { CLIENT_HEADER, type Access } from '../protocol/index.ts';
import { bearerToken, cookieValue, isLoopback, SESSION_COOKIE } from './auth.ts';
import { mayUseApi, mayWork, type Credentials, type TokenInfo } from './credentials.ts';
import { FarmError } from '../farm/index.ts';

export type { Access };

/** How a request proved who it is. */
export type Principal =
  | { via: 'token'; token: TokenInfo }
  | { via: 'session'; token: TokenInfo; sessionId: string }
  | { via: 'loopback' };

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** A proxy on this machine makes every client look local: such requests never get loopback trust. */
const PROXY_HEADERS = ['forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-real-ip'];

/**
 * The names a browser may use for this server. A page on another site that re-points its
 * own DNS name at this machine (DNS rebinding) sends its own name in Host, and is refused.
 */
export class HostPolicy {
  private readonly publicHosts: Set<string>;

  constructor(publicHosts: readonly string[]) {
    this.publicHosts = new Set(publicHosts.map(normalHost));
  }

  allowsHost(host: string | undefined): boolean {
    const name = hostName(host);
    if (name === null) return false;
    return isLoopbackHostName(name) || this.publicHosts.has(name) || machineNames().has(name);
  }

  allowsOrigin(origin: string): boolean {
    try {
      return this.allowsHost(new URL(origin).host);
    } catch {
      return false;
    }
  }

  /** A name that can only mean this machine: what loopback trust requires. */
  isLoopbackName(host: string | undefined): boolean {
    const name = hostName(host);
    return name !== null && isLoopbackHostName(name);
  }
}

function isLoopbackHostName(name: string): boolean {
  return name === 'localhost' || name === '::1' || name.endsWith('.localhost') || /^127\.\d+\.\d+\.\d+$/.test(name);
}

/** The host's name and addresses, read again each time: addresses change (DHCP, VPN). */
function machineNames(): Set<string> {
  const names = new Set([normalHost(os.hostname())]);
  for (const addresses of Object.values(os.networkInterfaces())) {
    for (const address of addresses ?? []) names.add(normalHost(address.address));
  }
  return names;
}

function normalHost(name: string): string {
  return name.toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
}

/** The name in a Host header (port and IPv6 brackets dropped), or null when it is no host. */
function hostName(host: string | undefined): string | null {
  if (!host) return null;
  try {
    const url = new URL(`http://${host}`);
    if (url.host !== host.toLowerCase() && url.host + ':80' !== host.toLowerCase()) return null; // path, user info, junk
    return normalHost(url.hostname);
  } catch {
    return null;
  }
}

export interface AccessOptions {
  credentials: Credentials;
  hosts: HostPolicy;
  trustLoopback: boolean;
}

export interface RegisteredRoute {
  method: string;
  url: string;
  access: Access;
}

/**
 * Access is decided on the route that matched, never on the URL's text: every route
 * carries its declared access (routing.ts takes it from src/protocol/routes.ts; a route
 * registered otherwise is `user`, closed by default), and one hook checks the request's
 * credentials against it. Returns the live
 * list of registered routes with their access, for tests and the API description.
 */
export function installAccessControl(app: FastifyInstance<any, any, any, any, any>, options: AccessOptions): RegisteredRoute[] {
  const routes: RegisteredRoute[] = [];
  app.decorateRequest('principal', null);
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const config = (route.config = { ...route.config, access: route.config?.access ?? 'user' });
    // Read when asked: a plugin's own onRoute hook (the web UI's) may still open its routes.
    for (const method of methods) routes.push({ method, url: route.url ?? route.path, get access() { return config.access; } });
  });

  app.addHook('onRequest', async (request) => {
    if (request.is404) return; // the not-found answer reveals nothing
    const access = request.routeOptions.config.access ?? 'user';
    const bearer = bearerToken(request.headers.authorization);
    // A bearer token is no browser credential, so a rebinding page cannot carry one.
    if (bearer === undefined && !options.hosts.allowsHost(request.headers.host)) {
      request.log.warn({ host: request.headers.host, remote: request.socket.remoteAddress }, 'request refused: unknown Host');
      throw new FarmError('UNKNOWN_HOST', `this server does not answer to the name "${request.headers.host ?? ''}": add it to public_hosts in the server's settings.conf`);
    }
    request.principal = identify(request.headers, request.socket.remoteAddress, bearer, options);
    if (access === 'open') return;
    refuseUnless(request, access);
  });

  return routes;
}

/** Whether the principal may use the API: a user (or legacy) token, a session, or loopback trust. */
export function usesApi(principal: Principal | null): principal is Principal {
  return principal !== null && (principal.via === 'loopback' || mayUseApi(principal.token.role));
}

/** Whoever a request (HTTP, or a WebSocket's upgrade) proves to be, if anyone. */
export function identify(
  headers: IncomingHttpHeaders,
  remoteAddress: string | undefined,
  bearer: string | undefined,
  options: Pick<AccessOptions, 'credentials' | 'hosts' | 'trustLoopback'>,
): Principal | null {
  if (bearer !== undefined) {
    const token = options.credentials.verify(bearer);
    return token ? { via: 'token', token } : null;
  }
  const sessionId = cookieValue(headers.cookie, SESSION_COOKIE);
  const sessionToken = sessionId ? options.credentials.session(sessionId) : null;
  if (sessionId && sessionToken) return { via: 'session', token: sessionToken, sessionId };
  const trusted =
    options.trustLoopback &&
    isLoopback(remoteAddress) &&
    options.hosts.isLoopbackName(headers.host) &&
    !PROXY_HEADERS.some((header) => headers[header] !== undefined);
  return trusted ? { via: 'loopback' } : null;
}

function refuseUnless(request: FastifyRequest, access: 'user' | 'worker'): void {
  const principal = request.principal;
  if (principal === null) {
    request.log.warn({ remote: request.socket.remoteAddress, route: request.routeOptions.url }, 'request refused: missing or wrong token');
    throw new FarmError('UNAUTHENTICATED', 'missing or wrong access token');
  }
  if (access === 'worker') {
    // Loopback trust is for people at this machine, never for the worker protocol.
    if (principal.via !== 'token') throw new FarmError('UNAUTHENTICATED', 'missing worker token');
    if (!mayWork(principal.token.role)) throw new FarmError('WRONG_TOKEN_ROLE', 'this route is for workers: it needs a worker token');
    return;
  }
  if (!usesApi(principal)) {
    throw new FarmError('WRONG_TOKEN_ROLE', 'a worker token opens the worker protocol only; use a user token');
  }
  // Browsers (cookie or loopback trust) must prove a state change comes from our own page.
  const changesState = !['GET', 'HEAD', 'OPTIONS'].includes(request.method);
  if (!changesState || principal.via === 'token') return;
  if (request.headers[CLIENT_HEADER] === undefined) {
    throw new FarmError('CROSS_SITE_REQUEST', `state-changing requests need the ${CLIENT_HEADER} header (protection against cross-site requests)`);
  }
  const origin = request.headers.origin;
  if (origin !== undefined && !sameHost(origin, request.headers.host)) {
    throw new FarmError('CROSS_SITE_REQUEST', 'state-changing requests from pages of other sites are refused');
  }
}

/** The Origin of a browser request must name the host the request was sent to (already checked). */
function sameHost(origin: string, host: string | undefined): boolean {
  try {
    return normalHost(new URL(origin).host) === normalHost(host ?? '');
  } catch {
    return false; // "null" (sandboxed frames, file pages) included: our own page never sends it
  }
}
