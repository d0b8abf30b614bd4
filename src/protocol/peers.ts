import { z } from 'zod';
import { idSchema, sha256Schema } from './api.ts';

/**
 * Peer transfer: workers that hold a file (a .blend or a project file, by SHA-256) serve
 * it to other workers, so a project sent to many workers leaves the server about once.
 *
 * - A worker that serves (its `peer_port` setting) says so in its hello, and tells the
 *   server which files it holds (`files` messages, below).
 * - A worker about to fetch a file asks the server where from (the route `fileSources`):
 *   a few peers that hold it and have a free upload slot, or "wait", or nobody (then the
 *   server itself). It checks every byte by SHA-256 whatever the source, and falls back
 *   to the next peer, then to the server.
 * - Peers authenticate each other with the farm's peer key, given to each worker in its
 *   welcome over its worker-token connection: a worker's own token never reaches a peer.
 */

/** The one route a worker's peer server answers; anything else is 404. */
export const peerRoute = {
  name: 'peerFile',
  method: 'get',
  path: '/peer/files/:sha256',
  /** peer: the farm's peer key as a bearer token (see above). */
  access: 'peer',
  params: { sha256: sha256Schema },
} as const;

/** The peer route's path for a file. */
export function peerFilePath(sha256: string): string {
  return peerRoute.path.replace(':sha256', sha256Schema.parse(sha256));
}

/**
 * Uploads a peer serves at once: the server counts the fetches it sends to each peer
 * against this, and the peer refuses more itself (PEER_BUSY_STATUS).
 */
export const PEER_UPLOAD_SLOTS = 2;

/** A peer's answer when all its upload slots are taken: try another source. */
export const PEER_BUSY_STATUS = 503;

/** Hashes in one `files` message: 2000 × 67 bytes stays well under a message's 256 KiB. */
export const MAX_FILES_PER_MESSAGE = 2000;

/** The farm's peer key: a random secret of the server's run, rotated when a worker token is revoked. */
export const peerKeySchema = z.string().min(32).max(100);

/**
 * Worker → server: files this worker now holds (verified, in its cache) and files it no
 * longer holds (evicted). `reset`: the list starts afresh (the first message after each
 * connect lists everything the cache holds, in as many messages as it takes).
 */
export const workerFilesSchema = z.object({
  type: z.literal('files'),
  added: z.array(sha256Schema).max(MAX_FILES_PER_MESSAGE).default([]),
  removed: z.array(sha256Schema).max(MAX_FILES_PER_MESSAGE).default([]),
  reset: z.boolean().default(false),
});
export type WorkerFiles = z.infer<typeof workerFilesSchema>;

/** A peer to fetch a file from. */
export const peerSourceSchema = z.object({ workerId: idSchema, url: z.url({ protocol: /^http$/ }) });
export type PeerSource = z.infer<typeof peerSourceSchema>;

/**
 * Where to fetch a file from. `peers`: try these in order, then the server. `waitMs`: not
 * now, the file is on its way to a peer or every peer's slots are taken: fetch other files
 * and ask again after that long (null: fetch now).
 */
export const fileSourcesSchema = z.object({
  peers: z.array(peerSourceSchema).max(8),
  waitMs: z.int().min(1).max(60_000).nullable(),
});
export type FileSources = z.infer<typeof fileSourcesSchema>;

/** The `exclude` query parameter of `fileSources`: ids of peers that failed this worker, comma-separated. */
export const excludedPeersSchema = z
  .string()
  .max(41 * 64)
  .regex(/^[a-z0-9]{6,40}(,[a-z0-9]{6,40})*$/, 'expected worker ids separated by commas');
