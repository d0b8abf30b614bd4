import { randomBytes } from 'node:crypto';
import { PEER_UPLOAD_SLOTS, type FileSources, type WorkerFiles } from '../protocol/index.ts';
import { chooseSources, type Holder } from './peer-choice.ts';

/** Peers offered in one answer: the asker tries them in turn before the server. */
const MAX_PEERS_OFFERED = 3;
/** How long an asker waits before asking again when a peer will soon have the file or a free slot. */
export const PEER_WAIT_MS = 50;
/** Files the server sends at once to workers that serve: enough to fill its uplink, few enough to finish early. */
export const SERVER_SENDS_AT_ONCE = 2;
/**
 * A fetch the server pointed a worker to counts (as a busy slot, and as a peer to be)
 * until the worker reports the file held, asks again, leaves, or this long has passed
 * (a worker that vanished without closing its connection).
 */
const LEASE_MS = 120_000;

interface Lease {
  fetcher: string;
  sha256: string;
  /** The peer it was sent to, or null: the server. */
  source: string | null;
  /** Whether the fetcher serves what it fetches: only then is it a peer to be. */
  fetcherServes: boolean;
  until: number;
}

/**
 * The server's memory of which connected worker holds which file, where each serving
 * worker listens, and which fetches it has handed out (in memory only: workers report
 * their whole cache again on every connect). No I/O; the clock is passed in.
 */
export class FileHolders {
  private readonly urls = new Map<string, string | null>();
  private readonly holders = new Map<string, Set<string>>();
  private readonly held = new Map<string, Set<string>>();
  private readonly leases = new Map<string, Lease>();
  private key = newPeerKey();
  private readonly listeners = new Set<() => void>();

  /** The farm's current peer key (src/protocol/peers.ts). */
  get peerKey(): string {
    return this.key;
  }

  /** A new peer key (a worker token was revoked: the worker that held it knew the old one). */
  rotatePeerKey(): string {
    return (this.key = newPeerKey());
  }

  /** A worker connected; `url` is where it serves its files, null when it does not. */
  joined(workerId: string, url: string | null): void {
    this.left(workerId);
    this.urls.set(workerId, url);
  }

  /** A worker left: it serves nothing and fetches nothing any more. */
  left(workerId: string): void {
    if (!this.urls.has(workerId)) return;
    this.urls.delete(workerId);
    for (const sha256 of this.held.get(workerId) ?? []) this.dropHolder(sha256, workerId);
    this.held.delete(workerId);
    for (const [key, lease] of this.leases) if (lease.fetcher === workerId || lease.source === workerId) this.leases.delete(key);
    this.changed();
  }

  /**
   * Resolves at the next change that may alter an answer (a file held or evicted, a fetch
   * ended, a worker gone), or after `ms`: an asker told to wait can be answered at once.
   */
  nextChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.listeners.add(done);
    });
  }

  /** What a worker reports: files now held (which ends its fetches of them) and files evicted. */
  files(workerId: string, report: Pick<WorkerFiles, 'added' | 'removed' | 'reset'>): void {
    if (!this.urls.has(workerId)) return;
    for (const sha256 of report.added) this.leases.delete(leaseKey(workerId, sha256));
    const serves = this.urls.get(workerId) !== null;
    if (!serves) return this.changed(); // it fetches, but nobody fetches from it
    let mine = this.held.get(workerId);
    if (report.reset && mine) {
      for (const sha256 of mine) this.dropHolder(sha256, workerId);
      mine = undefined;
    }
    if (!mine) this.held.set(workerId, (mine = new Set()));
    for (const sha256 of report.added) {
      mine.add(sha256);
      let set = this.holders.get(sha256);
      if (!set) this.holders.set(sha256, (set = new Set()));
      set.add(workerId);
    }
    for (const sha256 of report.removed) {
      mine.delete(sha256);
      this.dropHolder(sha256, workerId);
    }
    this.changed();
  }

  /** Where `asker` should fetch `sha256` from now; a fetch sent somewhere is remembered until it ends. */
  sources(asker: string, sha256: string, excluded: ReadonlySet<string>, nowMs: number): FileSources {
    this.expire(nowMs);
    // Asking again means the last attempt is over (it failed, or it waited).
    if (this.leases.delete(leaseKey(asker, sha256))) this.changed();
    const uploads = new Map<string, number>();
    let incoming = 0;
    let serverSends = 0;
    for (const lease of this.leases.values()) {
      if (lease.source !== null) uploads.set(lease.source, (uploads.get(lease.source) ?? 0) + 1);
      else serverSends++;
      if (lease.sha256 === sha256 && lease.fetcherServes) incoming++;
    }
    const holders: Holder[] = [...(this.holders.get(sha256) ?? [])].map((workerId) => ({
      workerId,
      url: this.urls.get(workerId)!,
      uploads: uploads.get(workerId) ?? 0,
    }));
    const fetcherServes = (this.urls.get(asker) ?? null) !== null;
    const choice = chooseSources({
      asker,
      holders,
      excluded,
      incoming,
      slotsPerPeer: PEER_UPLOAD_SLOTS,
      maxPeers: MAX_PEERS_OFFERED,
      askerServes: fetcherServes,
      serverSends,
      maxServerSends: SERVER_SENDS_AT_ONCE,
    });
    if (choice.kind === 'wait') return { peers: [], waitMs: PEER_WAIT_MS };
    const source = choice.kind === 'peers' ? choice.peers[0]!.workerId : null;
    this.leases.set(leaseKey(asker, sha256), { fetcher: asker, sha256, source, fetcherServes, until: nowMs + LEASE_MS });
    return { peers: choice.kind === 'peers' ? choice.peers.map(({ workerId, url }) => ({ workerId, url })) : [], waitMs: null };
  }

  /** Connected workers that hold the file and serve it (tests, diagnostics). */
  holdersOf(sha256: string): string[] {
    return [...(this.holders.get(sha256) ?? [])];
  }

  private dropHolder(sha256: string, workerId: string): void {
    const set = this.holders.get(sha256);
    set?.delete(workerId);
    if (set?.size === 0) this.holders.delete(sha256);
  }

  private expire(nowMs: number): void {
    let expired = false;
    for (const [key, lease] of this.leases) {
      if (lease.until > nowMs) continue;
      this.leases.delete(key);
      expired = true;
    }
    if (expired) this.changed();
  }

  private changed(): void {
    for (const listener of [...this.listeners]) listener();
  }
}

const leaseKey = (fetcher: string, sha256: string) => `${fetcher}:${sha256}`;
const newPeerKey = () => randomBytes(32).toString('base64url');
