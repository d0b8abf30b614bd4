import type { FastifyInstance } from 'fastify';
import { routeNamed } from '../protocol/index.ts';

/**
 * A client that sends its request slowly holds a connection and memory. Every route but
 * the uploads (which stream for as long as the file takes) must have its request read
 * within this time; the answer itself, a download for instance, may take longer.
 */
export const REQUEST_READ_LIMIT_MS = 30_000;

/** Routes that stream their body themselves, for as long as it takes. */
const UPLOAD_ROUTES = new Set(
  (['submitJob', 'uploadFrame', 'uploadTile'] as const).map((name) => {
    const route = routeNamed(name);
    return `${route.method.toUpperCase()} ${route.path}`;
  }),
);

export function limitRequestTime(app: FastifyInstance<any, any, any, any, any>, limitMs = REQUEST_READ_LIMIT_MS): void {
  const timers = new WeakMap<object, NodeJS.Timeout>();
  app.addHook('onRequest', async (request) => {
    if (UPLOAD_ROUTES.has(`${request.method} ${request.routeOptions.url}`)) return;
    const timer = setTimeout(() => {
      request.log.warn({ remote: request.socket.remoteAddress, route: request.routeOptions.url }, 'request not received in time: connection closed');
      request.raw.destroy();
    }, limitMs);
    timer.unref();
    timers.set(request, timer);
  });
  // By preHandler the body has been read and validated: the rest is the server's work.
  const clear = async (request: object) => clearTimeout(timers.get(request));
  app.addHook('preHandler', clear);
  app.addHook('onResponse', clear);
}
