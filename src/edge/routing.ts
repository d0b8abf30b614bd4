import type { FastifyInstance, FastifyRequest, RouteHandlerMethod } from 'fastify';
import { z } from 'zod';
import { routeNamed, type PathValues, type QueryValues, type RouteName } from '../protocol/index.ts';
import { parse } from './validate.ts';

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

/** A route's path parameters, checked against the schemas its declaration gives them (a 400 names the bad one). */
export function pathOf<N extends RouteName>(name: N, request: FastifyRequest): PathValues<N> {
  return parse(inputSchema(name, 'path'), request.params) as PathValues<N>;
}

/** A route's query parameters, checked against its declaration, defaults applied. */
export function queryOf(name: RouteName, request: FastifyRequest): QueryValues {
  return parse(inputSchema(name, 'query'), request.query) as QueryValues;
}

const schemas = new Map<string, z.ZodType>();

/**
 * The zod object for a route's path or query parameters, built once from its declaration.
 * They arrive as text: a number parameter is read as a number before its schema checks it.
 */
function inputSchema(name: RouteName, where: 'path' | 'query'): z.ZodType {
  const key = `${name} ${where}`;
  let schema = schemas.get(key);
  if (!schema) {
    const params = ((routeNamed(name) as { params?: ReadonlyArray<{ name: string; in: string; schema: z.ZodType; required?: boolean }> }).params ?? []).filter(
      (param) => param.in === where,
    );
    const shape: Record<string, z.ZodType> = {};
    for (const param of params) {
      const typed = isNumber(param.schema) ? z.coerce.number().pipe(param.schema as z.ZodType<number, number>) : param.schema;
      // An optional query parameter may be absent; one with a default already takes that.
      const mayBeAbsent = where === 'query' && !param.required && !param.schema.safeParse(undefined).success;
      shape[param.name] = mayBeAbsent ? typed.optional() : typed;
    }
    schemas.set(key, (schema = z.object(shape)));
  }
  return schema;
}

function isNumber(schema: z.ZodType): boolean {
  return (schema as { def?: { type?: string } }).def?.type === 'number';
}
