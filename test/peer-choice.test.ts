/**
 * The choices behind peer transfer, without I/O: which source a worker is sent to, and
 * the server's memory of holders and fetches under way.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FileHolders, PEER_WAIT_MS } from '../src/farm/file-holders.ts';
import { chooseSources, peerUrl, type Holder } from '../src/farm/peer-choice.ts';
import { PEER_UPLOAD_SLOTS } from '../src/protocol/index.ts';

describe('choosing where a worker fetches a file from', () => {
  const holder = (workerId: string, uploads = 0): Holder => ({ workerId, url: `http://127.0.0.1:1/${workerId}`, uploads });
  const ask = (holders: Holder[], extra: { incoming?: number; excluded?: string[]; asker?: string; serverSends?: number; askerServes?: boolean } = {}) =>
    chooseSources({
      asker: extra.asker ?? 'asker1',
      holders,
      excluded: new Set(extra.excluded ?? []),
      incoming: extra.incoming ?? 0,
      slotsPerPeer: 2,
      maxPeers: 3,
      askerServes: extra.askerServes ?? true,
      serverSends: extra.serverSends ?? 0,
      maxServerSends: 2,
    });

  it('prefers peers with a free slot, the least busy first', () => {
    assert.deepEqual(ask([holder('busy01', 1), holder('idle01', 0), holder('full01', 2)]), { kind: 'peers', peers: [holder('idle01', 0), holder('busy01', 1)] });
  });

  it('waits when every holder is busy, or when none holds the file yet but one is fetching it', () => {
    assert.deepEqual(ask([holder('full01', 2)]), { kind: 'wait' });
    assert.deepEqual(ask([], { incoming: 1 }), { kind: 'wait' });
  });

  it('sends the worker to the server only when no peer holds or is fetching the file', () => {
    assert.deepEqual(ask([]), { kind: 'server' });
    assert.deepEqual(ask([holder('asker1')]), { kind: 'server' }, 'the asker is never its own peer');
    assert.deepEqual(ask([holder('bad001')], { excluded: ['bad001'] }), { kind: 'server' }, 'a peer that failed the asker is not offered again');
  });

  it('lets the server send only a few files at once to workers that serve, so the first are whole early', () => {
    assert.deepEqual(ask([], { serverSends: 1 }), { kind: 'server' });
    assert.deepEqual(ask([], { serverSends: 2 }), { kind: 'wait' });
    assert.deepEqual(ask([], { serverSends: 2, askerServes: false }), { kind: 'server' }, 'a worker that will not serve gains nothing from waiting');
  });

  it('builds peer URLs from the address the worker connected from', () => {
    assert.equal(peerUrl('::ffff:10.0.0.7', 7412), 'http://10.0.0.7:7412');
    assert.equal(peerUrl('fe80::1', 7412), 'http://[fe80::1]:7412');
  });
});

describe("the server's memory of holders and fetches", () => {
  const sha = (n: number) => String(n).repeat(64).slice(0, 64);

  it('spreads a flood: the first fetcher goes to the server, the others wait, then fetch from peers', () => {
    const holders = new FileHolders();
    const workers = ['aaaaaa', 'bbbbbb', 'cccccc', 'dddddd'];
    workers.forEach((id, i) => holders.joined(id, `http://127.0.0.1:${9000 + i}`));
    assert.deepEqual(holders.sources('aaaaaa', sha(1), new Set(), 0), { peers: [], waitMs: null }, 'nobody has it: the server');
    assert.deepEqual(holders.sources('bbbbbb', sha(1), new Set(), 0), { peers: [], waitMs: PEER_WAIT_MS }, 'aaaaaa is fetching it: wait');
    holders.files('aaaaaa', { added: [sha(1)], removed: [], reset: false });
    const toB = holders.sources('bbbbbb', sha(1), new Set(), 1);
    const toC = holders.sources('cccccc', sha(1), new Set(), 1);
    assert.deepEqual([toB.peers[0]?.workerId, toC.peers[0]?.workerId], ['aaaaaa', 'aaaaaa']);
    assert.equal(PEER_UPLOAD_SLOTS, 2);
    assert.deepEqual(holders.sources('dddddd', sha(1), new Set(), 1), { peers: [], waitMs: PEER_WAIT_MS }, "aaaaaa's two slots are taken");
    holders.files('bbbbbb', { added: [sha(1)], removed: [], reset: false });
    assert.deepEqual(holders.sources('dddddd', sha(1), new Set(), 2).peers.map((p) => p.workerId), ['bbbbbb', 'aaaaaa'], 'bbbbbb holds it now and is idle; aaaaaa has a slot free again');
  });

  it('forgets a worker that leaves, a file it evicts, and fetches that lasted too long', () => {
    const holders = new FileHolders();
    holders.joined('aaaaaa', 'http://127.0.0.1:9000');
    holders.joined('bbbbbb', 'http://127.0.0.1:9001');
    holders.files('aaaaaa', { added: [sha(1), sha(2)], removed: [], reset: false });
    holders.files('aaaaaa', { added: [], removed: [sha(2)], reset: false });
    assert.deepEqual(holders.holdersOf(sha(1)), ['aaaaaa']);
    assert.deepEqual(holders.holdersOf(sha(2)), [], 'evicted');
    holders.files('aaaaaa', { added: [sha(3)], removed: [], reset: true });
    assert.deepEqual(holders.holdersOf(sha(1)), [], 'a reset replaces the whole list');
    holders.left('aaaaaa');
    assert.deepEqual(holders.holdersOf(sha(3)), []);
    holders.sources('bbbbbb', sha(4), new Set(), 0);
    holders.joined('cccccc', 'http://127.0.0.1:9002');
    assert.equal(holders.sources('cccccc', sha(4), new Set(), 1000).waitMs, PEER_WAIT_MS, 'bbbbbb is fetching it');
    assert.equal(holders.sources('cccccc', sha(4), new Set(), 200_000).waitMs, null, 'a fetch silent for minutes no longer counts');
  });

  it('counts only workers that serve as peers to be, and keeps no holdings for them', () => {
    const holders = new FileHolders();
    holders.joined('nopeer', null);
    holders.joined('server', 'http://127.0.0.1:9000');
    assert.equal(holders.sources('nopeer', sha(1), new Set(), 0).waitMs, null);
    assert.equal(holders.sources('server', sha(1), new Set(), 0).waitMs, null, 'nopeer will not serve what it fetches: no reason to wait for it');
    holders.files('nopeer', { added: [sha(2)], removed: [], reset: false });
    assert.deepEqual(holders.holdersOf(sha(2)), []);
  });

  it('sends two files from the server at a time; a file held frees the server for the next', async () => {
    const holders = new FileHolders();
    for (const id of ['aaaaaa', 'bbbbbb', 'cccccc']) holders.joined(id, `http://127.0.0.1:9000/${id}`);
    assert.equal(holders.sources('aaaaaa', sha(1), new Set(), 0).waitMs, null);
    assert.equal(holders.sources('bbbbbb', sha(2), new Set(), 0).waitMs, null);
    assert.equal(holders.sources('cccccc', sha(3), new Set(), 0).waitMs, PEER_WAIT_MS, 'two files are on their way from the server');
    let woken = false;
    const change = holders.nextChange(60_000).then(() => (woken = true));
    holders.files('aaaaaa', { added: [sha(1)], removed: [], reset: false });
    await change;
    assert.ok(woken, 'a waiting asker hears of the change at once');
    assert.equal(holders.sources('cccccc', sha(3), new Set(), 1).waitMs, null);
  });

  it('makes a new peer key on rotation', () => {
    const holders = new FileHolders();
    const first = holders.peerKey;
    assert.ok(first.length >= 32);
    assert.notEqual(holders.rotatePeerKey(), first);
    assert.notEqual(holders.peerKey, first);
  });
});
