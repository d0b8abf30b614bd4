import type { FastifyInstance, RouteHandlerMethod } from 'fastify';
import { routeNamed, type RouteName } from '../protocol/index.ts';

/**
 * Registers the handler of a route declared in src/protocol/routes.ts, by its name: the
 * method, the path and the access come from the declaration, so they are written once.
 */
export function on(
  app: FastifyInstance<any, any, any, any, any>,
  name: RouteName,
  handler: RouteHandlerMethod<any, any, any, any>,
  options: { bodyLimit?: number } = {},
): void {
  const route = routeNamed(name);
  app.route({ method: route.method.toUpperCase() as Uppercase<typeof route.method>, url: route.path, config: { access: route.access }, handler, ...options });
}
