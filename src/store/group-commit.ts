import type SQLite from 'better-sqlite3';
import type { SqliteDatabase, SqliteStatement } from 'kysely';

/** Distinct statements kept prepared; the farm uses a few dozen, so this never evicts in practice. */
const STATEMENT_CACHE_SIZE = 500;

/**
 * How long a group stays open. A turn of the event loop holds only a few writes even on a
 * busy farm; a few milliseconds gather dozens. Nothing waits for the commit except answers
 * that promise a write is saved, so this delays no render.
 */
const COMMIT_DELAY_MS = 10;

/**
 * The one SQLite connection the store's Kysely instance runs on, with two changes that
 * matter on a busy farm (hundreds of small writes a second; see docs/benchmarks.md):
 *
 * - Statements are prepared once per SQL text: Kysely prepares every query afresh, and
 *   preparing was the largest single cost per frame.
 * - Group commit: a commit per write cost more than the write (WAL copies of the same
 *   pages, and checkpoints that fsync), so everything written in one turn of the event
 *   loop shares one transaction, committed at the end of the turn. Statements still run
 *   at once and in call order on this one connection, so reads see earlier writes, and
 *   Kysely's own transactions become savepoints inside it and stay all-or-nothing. Only
 *   the moment a write reaches the disk moves: `committed()` resolves then, and callers
 *   that promise durability to someone (an HTTP answer) wait for it.
 */
export class GroupCommitDatabase implements SqliteDatabase {
  private readonly prepared = new Map<string, SQLite.Statement>();
  /** Kysely transactions open inside the group's transaction (savepoint depth). */
  private savepoints = 0;
  /** A transaction was begun and not yet committed: if SQLite has none open, an error rolled it back. */
  private uncommitted = false;
  private commitScheduled = false;
  private lostWrites: Error | null = null;
  private waiters: Array<{ resolve: () => void; reject: (error: Error) => void }> = [];

  constructor(
    private readonly sqlite: SQLite.Database,
    /** Told when writes callers already saw succeed could not be saved (disk full, I/O error). */
    private readonly onCommitFailed: (error: Error) => void,
  ) {}

  prepare(sql: string): SqliteStatement {
    switch (sql) {
      case 'begin':
        return this.control(() => {
          this.begin();
          this.sqlite.exec(`SAVEPOINT kysely_${++this.savepoints}`);
        });
      case 'commit':
        return this.control(() => this.sqlite.exec(`RELEASE kysely_${this.savepoints--}`));
      case 'rollback':
        return this.control(() => {
          const name = `kysely_${this.savepoints--}`;
          this.sqlite.exec(`ROLLBACK TO ${name}; RELEASE ${name}`);
        });
    }
    const statement = this.statement(sql);
    if (!statement.readonly) this.begin();
    return statement;
  }

  /** Resolves when everything written so far is on disk; rejects if it could not be saved. */
  committed(): Promise<void> {
    if (!this.uncommitted) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  close(): void {
    this.savepoints = 0;
    this.commit();
    this.sqlite.close();
  }

  private statement(sql: string): SQLite.Statement {
    let statement = this.prepared.get(sql);
    if (!statement) {
      statement = this.sqlite.prepare(sql);
      if (this.prepared.size >= STATEMENT_CACHE_SIZE) this.prepared.delete(this.prepared.keys().next().value!);
      this.prepared.set(sql, statement);
    }
    return statement;
  }

  private begin(): void {
    if (this.sqlite.inTransaction) return;
    // Disk full and I/O errors make SQLite roll back the whole transaction, taking this
    // turn's earlier writes with it although their callers saw them succeed.
    if (this.uncommitted) this.lostWrites ??= rolledBack();
    this.sqlite.exec('BEGIN');
    this.uncommitted = true;
    this.scheduleCommit();
  }

  private scheduleCommit(): void {
    if (this.commitScheduled) return;
    this.commitScheduled = true;
    setTimeout(() => {
      this.commitScheduled = false;
      // A Kysely transaction still waiting on something: its savepoint must end first.
      if (this.savepoints > 0) this.scheduleCommit();
      else this.commit();
    }, COMMIT_DELAY_MS);
  }

  private commit(): void {
    if (!this.uncommitted) return;
    const waiters = this.waiters;
    this.waiters = [];
    let error = this.lostWrites;
    this.lostWrites = null;
    this.uncommitted = false;
    try {
      if (!this.sqlite.inTransaction) throw rolledBack();
      this.sqlite.exec('COMMIT');
    } catch (commitError) {
      error = commitError as Error;
      if (this.sqlite.inTransaction) this.sqlite.exec('ROLLBACK');
    }
    if (error) this.onCommitFailed(error);
    for (const waiter of waiters) {
      if (error) waiter.reject(error);
      else waiter.resolve();
    }
  }

  /** Kysely runs begin/commit/rollback as statements; here they become savepoints. */
  private control(run: () => void): SqliteStatement {
    return {
      reader: false,
      all: () => [],
      iterate: () => [][Symbol.iterator](),
      run: () => {
        run();
        return { changes: 0, lastInsertRowid: 0 };
      },
    };
  }
}

function rolledBack(): Error {
  return new Error('the database rolled back recent changes after an error (disk full or an I/O error?)');
}
