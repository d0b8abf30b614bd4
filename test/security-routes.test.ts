/**
 * Access is decided on the route that matched, never on the URL's text. Every route the
 * server registers (read from its own route list, so a new route is covered without
 * editing this test) is asked for in many spellings: percent-encoded letters, `//`, `/./`,
 * `x/../`, `;x`, a trailing slash, mixed case, absolute-form targets. Without credentials
 * the answer is never a 2xx; with them, the route answers normally.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { RegisteredRoute } from '../src/edge/access.ts';
import { startTestFarm, type TestFarm } from '../testkit/farm.ts';

/** A request sent exactly as written: no client normalises the target. */
function raw(port: number, method: string, target: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = http.request({ host: '127.0.0.1', port, method, path: target, headers: { host: `127.0.0.1:${port}`, ...headers } }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode ?? 0));
    });
    request.on('error', reject);
    request.end();
  });
}

/** A concrete path for a route pattern: ids that are well formed but name nothing. */
function concrete(url: string): string {
  return url
    .replace(':sha256', 'a'.repeat(64))
    .replace(':id', '0123456789abcdef')
    .replace(':frame', '1')
    .replace(':tile', '0')
    .replace(':tag', 'room-2')
    .replace('*', 'index.html');
}

/** The same target spelled the ways a router may decode or normalise differently from a guard. */
export function spellings(path: string, port: number): string[] {
  const segments = path.split('/').slice(1);
  const join = (parts: string[]) => `/${parts.join('/')}`;
  const variants = new Set<string>([path]);
  segments.forEach((segment, i) => {
    if (!segment) return;
    const encoded = `%${segment.charCodeAt(0).toString(16)}${segment.slice(1)}`;
    const doubly = `%25${segment.charCodeAt(0).toString(16)}${segment.slice(1)}`;
    for (const replacement of [encoded, encoded.toUpperCase(), doubly, `${segment};x`, segment.toUpperCase(), segment[0]!.toUpperCase() + segment.slice(1)]) {
      variants.add(join(segments.map((s, j) => (j === i ? replacement : s))));
    }
    if (i > 0) {
      const before = segments.slice(0, i);
      const rest = segments.slice(i);
      variants.add(join([...before, '', ...rest])); // a//b
      variants.add(join([...before, '.', ...rest])); // a/./b
      variants.add(join([...before, 'x', '..', ...rest])); // a/x/../b
      variants.add(`${join(before)}%2F${rest.join('/')}`); // a%2Fb
    }
  });
  variants.add(`${path}/`);
  variants.add(`/${path}`);
  variants.add(`${path}?x=1`);
  variants.add(`http://127.0.0.1:${port}${path}`);
  variants.add(`http://x${path}`);
  return [...variants];
}

describe('every route, every spelling: access follows the route that matched', () => {
  let farm: TestFarm;
  let port: number;
  let guarded: RegisteredRoute[];

  before(async () => {
    farm = await startTestFarm({ server: { trust_loopback: false } });
    port = farm.server.httpPort;
    guarded = farm.server.routes.filter((route) => route.access !== 'open' && route.method !== 'HEAD');
  });
  after(async () => farm?.close());

  it('knows the routes it guards from the server itself', () => {
    assert.ok(guarded.length >= 25, `only ${guarded.length} guarded routes: ${JSON.stringify(guarded)}`);
    for (const url of ['/api/jobs', '/api/jobs/:id', '/api/tokens', '/api/worker/blends/:sha256', '/api/worker/jobs/:id/frames/:frame']) {
      assert.ok(guarded.some((route) => route.url === url), `${url} is guarded`);
    }
    assert.ok(farm.server.routes.some((route) => route.url === '/api/login' && route.access === 'open'));
  });

  it('answers no spelling of a guarded route with a 2xx without credentials', async () => {
    let tried = 0;
    const leaks: string[] = [];
    for (const route of guarded) {
      for (const target of spellings(concrete(route.url), port)) {
        // Also as a browser would send a state change from our page: the client header does not open anything.
        const status = await raw(port, route.method, target, { 'x-archenland-client': 'web' });
        tried++;
        if (status >= 200 && status < 300) leaks.push(`${route.method} ${target} → ${status}`);
      }
    }
    assert.deepEqual(leaks, []);
    assert.ok(tried > guarded.length * 20, `tried ${tried} spellings`);
  });

  it('answers each guarded route normally with the right credentials, and refuses the wrong role', async () => {
    const { user, worker } = farm.server.tokens;
    for (const route of guarded) {
      const path = concrete(route.url);
      const right = route.access === 'worker' ? worker! : user!;
      const wrong = route.access === 'worker' ? user! : worker!;
      const withRight = await raw(port, route.method, path, { authorization: `Bearer ${right}` });
      assert.ok(![401, 403, 421].includes(withRight), `${route.method} ${path} with the right token answered ${withRight}`);
      const withWrong = await raw(port, route.method, path, { authorization: `Bearer ${wrong}` });
      assert.equal(withWrong, 403, `${route.method} ${path} with a ${route.access === 'worker' ? 'user' : 'worker'} token`);
      const withNone = await raw(port, route.method, path);
      assert.equal(withNone, 401, `${route.method} ${path} without a token`);
    }
  });

  it('answers the absolute-form and encoded spellings of the job list normally with a token', async () => {
    const headers = { authorization: `Bearer ${farm.server.tokens.user}` };
    assert.equal(await raw(port, 'GET', '/%61pi/jobs', headers), 200);
    assert.equal(await raw(port, 'GET', `http://127.0.0.1:${port}/api/jobs`, headers), 200);
    assert.equal(await raw(port, 'GET', '/%61pi/jobs'), 401);
    assert.equal(await raw(port, 'GET', 'http://x/api/jobs'), 401);
  });
});
