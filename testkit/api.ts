/**
 * testkit: simulated workers, fake scenes and small API helpers shared by the tests and the
 * benchmarks (see testkit/README.md).
 *
 * This file: a fake .blend, and small HTTP helpers against the real API (loopback only).
 * Requests carry the farm token as the CLI does, plus the client header state-changing
 * requests need, so they pass whichever check applies.
 */
import { createHash, randomBytes } from 'node:crypto';
import { apiPath, CLIENT_HEADER, type BlendRef, type Job, type ProjectCreated, type ProjectRef } from '../src/protocol/index.ts';

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

/**
 * A project on the server, as `archenland submit --project-dir` sends one: the manifest,
 * each file the server lacks, then a job whose .blend uses it (held, so nothing renders).
 * Resolves with what a worker is told of the job's scene.
 */
export async function uploadProject(
  httpUrl: string,
  token: string,
  files: ReadonlyArray<{ path: string; data: Buffer }>,
  blend: Buffer = fakeBlend(),
): Promise<{ jobId: string; project: ProjectRef; blend: BlendRef }> {
  const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');
  const manifest = { root: '/studio/project', main: 'main.blend', files: files.map((file) => ({ path: file.path, sha256: sha(file.data), size: file.data.length })) };
  const created = await fetch(`${httpUrl}${apiPath('createProject')}`, {
    method: 'POST',
    headers: { ...apiHeaders(token), 'content-type': 'application/json' },
    body: JSON.stringify(manifest),
  });
  if (created.status !== 200) throw new Error(`create project: HTTP ${created.status} ${await created.text()}`);
  const { id, missing } = (await created.json()) as ProjectCreated;
  for (const file of files) {
    const sha256 = sha(file.data);
    if (!missing.includes(sha256)) continue;
    const put = await fetch(`${httpUrl}${apiPath('uploadProjectFile', { sha256 })}`, {
      method: 'PUT',
      headers: { ...apiHeaders(token), 'content-type': 'application/octet-stream' },
      body: new Uint8Array(file.data),
    });
    if (put.status !== 201) throw new Error(`upload ${file.path}: HTTP ${put.status} ${await put.text()}`);
  }
  const job = await submitJob(httpUrl, token, blend, { project: id });
  return { jobId: job.id, project: { id, root: manifest.root, main: manifest.main }, blend: { sha256: sha(blend), size: blend.length } };
}
