/**
 * The store's group commit (src/store/group-commit.ts) on a real SQLite file, checked from
 * a second connection, which sees only what is committed.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import SQLite from 'better-sqlite3';
import { sql } from 'kysely';
import { Store, type NewJobRow } from '../src/store/index.ts';

const job = (id: string): NewJobRow => ({
  id,
  name: id,
  state: 'queued',
  priority: 0,
  allow_scripts: 0,
  project_id: null,
  blend_sha256: 'a'.repeat(64),
  blend_size: 1,
  requested_json: '{}',
  overrides_json: '{}',
  scene_json: null,
  frame_start: 1,
  frame_end: 3,
  frame_step: 1,
  fps: 24,
  file_extension: 'png',
  video_file: null,
  error: null,
  created_at: new Date().toISOString(),
  started_at: null,
  finished_at: null,
  blender_version: null,
});

describe('store group commit', () => {
  let dir: string;
  let store: Store;
  let reader: SQLite.Database;
  const failures: Error[] = [];
  const stateOnDisk = (id: string, n: number) =>
    (reader.prepare('select state from frames where job_id = ? and number = ?').get(id, n) as { state: string } | undefined)?.state;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'archenland-store-'));
    store = await Store.open(path.join(dir, 'farm.sqlite'), (error) => failures.push(error));
    reader = new SQLite(path.join(dir, 'farm.sqlite'), { readonly: true });
  });
  after(async () => {
    reader.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes of one turn reach the disk together, when committed() resolves', async () => {
    await store.insertJob(job('j1'));
    await store.insertFrames('j1', [1, 2, 3]);
    await store.startFrame('j1', 1, 'w');
    assert.equal((await store.getFrame('j1', 1))?.state, 'rendering', 'the store reads its own writes at once');
    assert.equal(stateOnDisk('j1', 1), undefined, 'another connection sees nothing before the commit');
    await store.committed();
    assert.equal(stateOnDisk('j1', 1), 'rendering');
    assert.equal(stateOnDisk('j1', 3), 'queued');
    await store.committed(); // nothing pending: resolves at once
  });

  it('a transaction that fails rolls back alone; the other writes of its turn are kept', async () => {
    const update = store.finishFrame('j1', 2, { worker_id: 'w', render_ms: 5, file: 'frame.png', sha256: null });
    // Frame 3 exists: the insert fails on the primary key, after inserting frame 4 in the same transaction.
    await assert.rejects(store.insertFrames('j1', [4, 3]), /UNIQUE/);
    await update;
    await store.committed();
    assert.equal(stateOnDisk('j1', 2), 'done');
    assert.equal(stateOnDisk('j1', 4), undefined, 'the failed transaction left nothing');
    assert.deepEqual(failures, []);
  });

  it('closing commits what is pending', async () => {
    const file = path.join(dir, 'close.sqlite');
    const other = await Store.open(file);
    await other.insertJob(job('j2'));
    await other.insertFrames('j2', [1]);
    await other.close();
    const check = new SQLite(file, { readonly: true });
    assert.equal((check.prepare('select count(*) as n from frames').get() as { n: number }).n, 1);
    check.close();
  });

  it('writes lost to a full database are reported, not silently dropped', async (t) => {
    const file = path.join(dir, 'full.sqlite');
    const lost: Error[] = [];
    const full = await Store.open(file, (error) => lost.push(error));
    await full.insertJob(job('j3'));
    await full.committed();
    // Cap the file at its current size: the next write that needs a new page fails with SQLITE_FULL.
    const sqlite = new SQLite(file);
    const pages = (sqlite.pragma('page_count', { simple: true }) as number) + 1;
    sqlite.close();
    await full.db.executeQuery({ sql: `pragma max_page_count = ${pages}`, parameters: [], query: { kind: 'RawNode' } as never, queryId: { queryId: 'cap' } });
    const kept = full.updateJob('j3', { name: 'renamed' });
    const tooBig = full.insertFrames('j3', Array.from({ length: 5000 }, (_, i) => i + 1));
    await kept;
    await assert.rejects(tooBig, /full/);
    const outcome = await full.committed().then(
      () => 'committed',
      (error: Error) => error.message,
    );
    const check = new SQLite(file, { readonly: true });
    const name = (check.prepare('select name from jobs where id = ?').get('j3') as { name: string }).name;
    check.close();
    // SQLite may keep the transaction (the rename is saved) or roll all of it back (then it must say so).
    t.diagnostic(`after SQLITE_FULL: ${outcome}`);
    if (outcome === 'committed') assert.equal(name, 'renamed');
    else {
      assert.match(outcome, /rolled back|full/);
      assert.ok(lost.length > 0, 'the failure was reported');
    }
    await full.close();
  });

  it('writes SQLite rolled back on its own (as after an I/O error) are reported to the waiters and the owner', async () => {
    const file = path.join(dir, 'rollback.sqlite');
    const lost: Error[] = [];
    const other = await Store.open(file, (error) => lost.push(error));
    await other.insertJob(job('j4'));
    const waiting = other.committed();
    // What SQLite does by itself after some errors: the whole open transaction is gone.
    await sql`ROLLBACK`.execute(other.db);
    await other.updateJob('j4', { name: 'after' }); // a new transaction, which commits
    await assert.rejects(waiting, /rolled back/);
    assert.equal(lost.length, 1);
    await other.close();
  });
});
