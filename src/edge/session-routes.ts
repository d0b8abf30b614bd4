import type { FastifyInstance } from 'fastify';
import { on, pathOf } from './routing.ts';
import { loginSchema, tokenRequestSchema, type CreatedToken } from '../protocol/index.ts';
import { usesApi } from './access.ts';
import { SESSION_COOKIE } from './auth.ts';
import { mayUseApi, SESSION_LIFETIME_MS, type Credentials } from './credentials.ts';
import type { DataDir } from '../store/index.ts';
import { FarmError } from '../farm/index.ts';
import { parse } from './validate.ts';

type App = FastifyInstance<any, any, any, any, any>;


/** Browser login with a user token: a server-side session behind an HttpOnly cookie. */
export function registerSessionRoutes(app: App, credentials: Credentials, secureCookies: boolean): void {
  const cookie = (value: string, maxAgeS: number) =>
    `${SESSION_COOKIE}=${value}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAgeS}${secureCookies ? '; Secure' : ''}`;

  on(app, 'session', async (request) => ({ authenticated: usesApi(request.principal) }));

  on(app, 'login', async (request, reply) => {
    const { token } = parse(loginSchema, request.body);
    const info = credentials.verify(token);
    if (!info || !mayUseApi(info.role)) {
      request.log.warn({ remote: request.socket.remoteAddress, role: info?.role }, 'login refused');
      throw new FarmError('UNAUTHENTICATED', info ? 'a worker token cannot log in: use a user token' : 'wrong access token');
    }
    const sessionId = await credentials.startSession(info);
    return reply.header('set-cookie', cookie(sessionId, SESSION_LIFETIME_MS / 1000)).send({ authenticated: true });
  });

  on(app, 'logout', async (request, reply) => {
    if (request.principal?.via === 'session') await credentials.endSession(request.principal.sessionId);
    return reply.header('set-cookie', cookie('', 0)).send({ authenticated: false });
  });
}


/** Token management for users: list, create (the secret is shown once), revoke. */
export function registerTokenRoutes(app: App, credentials: Credentials, dataDir: DataDir, legacyFromSettings: boolean): void {
  on(app, 'listTokens', async () => credentials.list());

  on(app, 'createToken', async (request, reply) => {
    const { role, name } = parse(tokenRequestSchema, request.body);
    const { info, token } = await credentials.create(role, name ?? `${role} token`);
    request.log.info({ id: info.id, role, name: info.name }, 'token created');
    return reply.status(201).send({ ...info, token } satisfies CreatedToken);
  });

  on(app, 'revokeToken', async (request, reply) => {
    const { id } = pathOf('revokeToken', request);
    const revoked = await credentials.revoke(id, dataDir, legacyFromSettings);
    request.log.info({ id, role: revoked.role, name: revoked.name }, 'token revoked');
    return reply.status(204).send();
  });
}
