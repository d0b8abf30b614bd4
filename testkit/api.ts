/**
 * testkit: simulated workers, fake scenes and small API helpers shared by the tests and the
 * benchmarks (see testkit/README.md).
 *
 * This file: a fake .blend, and small HTTP helpers against the real API (loopback only).
 * Requests carry the farm token as the CLI does, plus the client header state-changing
 * requests need, so they pass whichever check applies.
 */
import { randomBytes } from 'node:crypto';
import { CLIENT_HEADER, type Job } from '../src/protocol/index.ts';

/** The 12-byte header of a plain, 64-bit, little-endian .blend saved by Blender 3.4. */
export const BLEND_HEAD = Buffer.from('BLENDER-v304', 'ascii');
/** The closing "ENDB" block header (24 bytes with 64-bit pointers) a complete plain .blend ends with. */
export const BLEND_TAIL = Buffer.concat([Buffer.from('ENDB', 'ascii'), Buffer.alloc(20)]);

/** A file the server accepts as a plain .blend: header, `size` random bytes, closing block. */
export function fakeBlend(size = 1024): Buffer {
  return Buffer.concat([BLEND_HEAD, randomBytes(size), BLEND_TAIL]);
}

export function apiHeaders(token?: string): Record<string, string> {
  return { [CLIENT_HEADER]: 'testkit', ...(token ? { authorization: `Bearer ${token}` } : {}) };
}

/** POST /api/jobs with a multipart body, as the web UI does; resolves on HTTP 201. */
export async function submitJob(httpUrl: string, token: string | undefined, blend: Buffer | Blob, fields: Record<string, string> = {}): Promise<Job> {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  form.append('file', blend instanceof Blob ? blend : new Blob([new Uint8Array(blend)]), 'scene.blend');
  const response = await fetch(`${httpUrl}/api/jobs`, { method: 'POST', body: form, headers: apiHeaders(token) });
  const body = await response.json();
  if (response.status !== 201) throw new Error(`submit failed: HTTP ${response.status} ${JSON.stringify(body)}`);
  return body as Job;
}

export async function getJson<T>(httpUrl: string, token: string | undefined, pathName: string): Promise<T> {
  const response = await fetch(`${httpUrl}${pathName}`, { headers: apiHeaders(token) });
  const body = await response.json();
  if (!response.ok) throw new Error(`GET ${pathName}: HTTP ${response.status} ${JSON.stringify(body)}`);
  return body as T;
}

export async function postJson<T>(httpUrl: string, token: string | undefined, pathName: string): Promise<T> {
  const response = await fetch(`${httpUrl}${pathName}`, { method: 'POST', headers: apiHeaders(token) });
  const body = await response.json();
  if (!response.ok) throw new Error(`POST ${pathName}: HTTP ${response.status} ${JSON.stringify(body)}`);
  return body as T;
}
