/**
 * Which sources a worker should fetch a file from (pure: no I/O, no clock). The server
 * uplink is the scarce part when a project goes to many workers, so:
 * - a peer that holds the file and has a free upload slot is always preferred, the least
 *   busy first;
 * - when every peer that holds it is busy, or none holds it yet but one is fetching it
 *   now, the worker waits (and fetches other files meanwhile): a peer will have a slot or
 *   the file soon, while a second copy from the server would take the uplink from files
 *   no worker has yet;
 * - only a file that no peer holds or is fetching comes from the server, and to a worker
 *   that serves, only a few at a time: sent one after another, the first files are whole
 *   early and spread among the workers while the server sends the rest (sent all at once,
 *   none would be whole until the end, and then all would spread at once).
 * So each file leaves the server about once, and spreads from worker to worker. The
 * fetching worker stops waiting after a while and goes to the server (file-fetcher.ts).
 */

export interface Holder {
  workerId: string;
  url: string;
  /** Fetches this server has sent to it and that have not finished. */
  uploads: number;
}

export interface SourceQuestion {
  asker: string;
  /** Serving workers that hold the file. */
  holders: readonly Holder[];
  /** Peers that already failed the asker for this file. */
  excluded: ReadonlySet<string>;
  /** Serving workers other than the asker fetching the file now: peers to be. */
  incoming: number;
  /** Uploads a peer serves at once (it refuses more itself, too). */
  slotsPerPeer: number;
  /** Peers offered at most, for the asker to try in turn. */
  maxPeers: number;
  /** Whether the asker will serve the file to others once it holds it. */
  askerServes: boolean;
  /** Files the server is sending now, and how many it sends at once to workers that serve. */
  serverSends: number;
  maxServerSends: number;
}

export type SourceChoice = { kind: 'peers'; peers: Holder[] } | { kind: 'wait' } | { kind: 'server' };

export function chooseSources(question: SourceQuestion): SourceChoice {
  const candidates = question.holders.filter((holder) => holder.workerId !== question.asker && !question.excluded.has(holder.workerId));
  const free = candidates
    .filter((holder) => holder.uploads < question.slotsPerPeer)
    .sort((a, b) => a.uploads - b.uploads || (a.workerId < b.workerId ? -1 : 1));
  if (free.length > 0) return { kind: 'peers', peers: free.slice(0, question.maxPeers) };
  if (candidates.length > 0 || question.incoming > 0) return { kind: 'wait' };
  // A worker that will not serve gains nothing from the order: it is sent at once.
  if (question.askerServes && question.serverSends >= question.maxServerSends) return { kind: 'wait' };
  return { kind: 'server' };
}

/** The URL a peer serves on, from the address its connection to the server came from. */
export function peerUrl(remoteAddress: string, port: number): string {
  const address = remoteAddress.startsWith('::ffff:') ? remoteAddress.slice(7) : remoteAddress;
  return `http://${address.includes(':') ? `[${address}]` : address}:${port}`;
}
