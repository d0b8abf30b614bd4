import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** Compares tokens in constant time (hashing first makes the lengths equal). */
export function tokenMatches(presented: string | undefined, expected: string): boolean {
  if (!presented) return false;
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const plain = address.startsWith('::ffff:') ? address.slice(7) : address;
  return plain === '::1' || plain.startsWith('127.');
}

export function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)$/i.exec(header ?? '');
  return match?.[1];
}

export const SESSION_COOKIE = 'archenland_session';

/**
 * What a logged-in browser holds in its cookie: derived from the farm token, so it proves
 * the token was known without being the token itself, and changes when the token does.
 */
export function sessionValue(token: string): string {
  return createHmac('sha256', token).update('archenland web session').digest('base64url');
}

export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const [key, ...rest] = part.trim().split('=');
    if (key === name) return rest.join('=');
  }
  return undefined;
}

export function hasSessionCookie(cookieHeader: string | undefined, token: string): boolean {
  const presented = cookieValue(cookieHeader, SESSION_COOKIE);
  return presented !== undefined && tokenMatches(presented, sessionValue(token));
}

/** A browser page from another site may not listen in: its Origin must name this host. */
export function sameHostOrigin(origin: string | undefined, host: string | undefined): boolean {
  if (!origin) return true; // not a browser (CLI, workers)
  try {
    return new URL(origin).hostname === new URL(`http://${host ?? ''}`).hostname;
  } catch {
    return false;
  }
}
