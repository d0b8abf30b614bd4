import SQLite from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect, type Selectable, type SqliteDatabase } from 'kysely';
import type { FrameCounts, FrameState, JobState } from '../protocol/index.ts';
import { migrationProvider } from './migrations.ts';
import type { Database, FramesTable, JobsTable, WorkersTable } from './tables.ts';

export type JobRow = Selectable<JobsTable>;
export type FrameRow = Selectable<FramesTable>;
/** A frame without its Blender log: what lists need (a log can be 64 KB, a job 100,000 frames). */
export type FrameSummaryRow = Omit<FrameRow, 'log'>;
const summaryColumns = ['job_id', 'number', 'state', 'worker_id', 'attempts', 'render_ms', 'file', 'sha256', 'error', 'finished_at'] as const;
export type WorkerRow = Selectable<WorkersTable>;
export type NewJobRow = Omit<JobRow, 'seq'>;

/** Frames are inserted in chunks: SQLite caps the number of bound variables per statement. */
const INSERT_CHUNK = 2000;

const now = () => new Date().toISOString();

/** Distinct statements kept prepared; the farm uses a few dozen, so this never evicts in practice. */
const STATEMENT_CACHE_SIZE = 500;

/**
 * Kysely prepares every query afresh; preparing was the largest single cost per frame on a
 * busy farm (see docs/benchmarks.md). The farm's queries repeat with new parameters, so
 * each SQL text is prepared once and reused.
 */
function withStatementCache(sqlite: SQLite.Database): SqliteDatabase {
  const prepared = new Map<string, SQLite.Statement>();
  return {
    close: () => sqlite.close(),
    prepare(sql: string) {
      let statement = prepared.get(sql);
      if (!statement) {
        statement = sqlite.prepare(sql);
        if (prepared.size >= STATEMENT_CACHE_SIZE) prepared.delete(prepared.keys().next().value!);
        prepared.set(sql, statement);
      }
      return statement;
    },
  };
}

/**
 * The farm's durable state: jobs, frames and workers in SQLite (WAL), through Kysely so
 * the same queries could run on PostgreSQL. Every method is one statement or one
 * transaction; callers never see SQL.
 */
export class Store {
  /**
   * Job rows, written through: jobs are few but read on every frame event (a 500-worker
   * farm finishes hundreds of frames a second). Rows are frozen so a cached one cannot be
   * changed behind the database's back.
   */
  private readonly jobs = new Map<string, Readonly<JobRow>>();

  private constructor(readonly db: Kysely<Database>) {}

  static async open(file: string): Promise<Store> {
    const sqlite = new SQLite(file);
    // WAL keeps readers off the writer's back; NORMAL sync is durable across process
    // crashes (the case that matters here), only an OS crash can lose the last commit.
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('foreign_keys = ON');
    sqlite.pragma('busy_timeout = 5000');
    const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
    const { error } = await new Migrator({ db, provider: migrationProvider }).migrateToLatest();
    if (error) throw new Error(`could not migrate the database ${file}: ${String(error)}`);
    return new Store(db);
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }

  // ---- jobs --------------------------------------------------------------------

  async insertJob(job: NewJobRow): Promise<JobRow> {
    return this.db.transaction().execute(async (trx) => {
      const { maxSeq } = await trx
        .selectFrom('jobs')
        .select((eb) => eb.fn.max<number | null>('seq').as('maxSeq'))
        .executeTakeFirstOrThrow();
      const row = { ...job, seq: (maxSeq ?? 0) + 1 };
      await trx.insertInto('jobs').values(row).execute();
      return row;
    });
  }

  async updateJob(id: string, patch: Partial<Omit<JobRow, 'id' | 'seq'>>): Promise<void> {
    const row = await this.db.updateTable('jobs').set(patch).where('id', '=', id).returningAll().executeTakeFirst();
    if (row) this.jobs.set(id, Object.freeze(row));
  }

  async setJobState(id: string, state: JobState, patch: Partial<JobRow> = {}): Promise<void> {
    await this.updateJob(id, { ...patch, state });
  }

  async getJob(id: string): Promise<Readonly<JobRow> | undefined> {
    const cached = this.jobs.get(id);
    if (cached) return cached;
    const row = await this.db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
    if (row) this.jobs.set(id, Object.freeze(row));
    return row;
  }

  async listJobs(): Promise<JobRow[]> {
    return this.db.selectFrom('jobs').selectAll().orderBy('seq', 'asc').execute();
  }

  async listJobsInState(states: JobState[]): Promise<JobRow[]> {
    return this.db.selectFrom('jobs').selectAll().where('state', 'in', states).orderBy('seq').execute();
  }

  async deleteJob(id: string): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('frames').where('job_id', '=', id).execute();
      await trx.deleteFrom('jobs').where('id', '=', id).execute();
    });
    this.jobs.delete(id);
  }

  async jobsUsingBlend(sha256: string): Promise<number> {
    const { n } = await this.db
      .selectFrom('jobs')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('blend_sha256', '=', sha256)
      .executeTakeFirstOrThrow();
    return Number(n);
  }

  // ---- frames ------------------------------------------------------------------

  async insertFrames(jobId: string, numbers: number[]): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      for (let i = 0; i < numbers.length; i += INSERT_CHUNK) {
        const rows = numbers.slice(i, i + INSERT_CHUNK).map((number) => ({
          job_id: jobId,
          number,
          state: 'queued',
          worker_id: null,
          attempts: 0,
          render_ms: null,
          file: null,
          sha256: null,
          error: null,
          log: null,
          finished_at: null,
        }));
        await trx.insertInto('frames').values(rows).execute();
      }
    });
  }

  /** A job's frames are replaced wholesale when its frame range changes before it starts. */
  async deleteFrames(jobId: string): Promise<void> {
    await this.db.deleteFrom('frames').where('job_id', '=', jobId).execute();
  }

  /** Sum and count of render times of a job's finished frames, for its time estimate. */
  async renderTimes(jobId: string): Promise<{ totalMs: number; frames: number }> {
    const row = await this.db
      .selectFrom('frames')
      .select((eb) => [eb.fn.sum<number>('render_ms').as('totalMs'), eb.fn.count<number>('render_ms').as('frames')])
      .where('job_id', '=', jobId)
      .where('state', '=', 'done')
      .executeTakeFirstOrThrow();
    return { totalMs: Number(row.totalMs ?? 0), frames: Number(row.frames) };
  }

  async getFrame(jobId: string, number: number): Promise<FrameRow | undefined> {
    return this.db
      .selectFrom('frames')
      .selectAll()
      .where('job_id', '=', jobId)
      .where('number', '=', number)
      .executeTakeFirst();
  }

  async listFrames(jobId: string, state?: FrameState): Promise<FrameSummaryRow[]> {
    let query = this.db.selectFrom('frames').select(summaryColumns).where('job_id', '=', jobId);
    if (state) query = query.where('state', '=', state);
    return query.orderBy('number').execute();
  }

  /** Changes a frame and returns it as stored, so callers publish it without reading it back. */
  async updateFrame(jobId: string, number: number, patch: Partial<Omit<FrameRow, 'job_id' | 'number'>>): Promise<FrameRow | undefined> {
    return this.db
      .updateTable('frames')
      .set(patch)
      .where('job_id', '=', jobId)
      .where('number', '=', number)
      .returningAll()
      .executeTakeFirst();
  }

  /** Keeps Blender's output for a frame, unless another worker's result is the frame's (a losing copy). */
  async setFrameLog(jobId: string, number: number, log: string, workerId: string): Promise<void> {
    await this.db
      .updateTable('frames')
      .set({ log })
      .where('job_id', '=', jobId)
      .where('number', '=', number)
      .where((eb) => eb.or([eb('worker_id', 'is', null), eb('worker_id', '=', workerId)]))
      .execute();
  }

  /** Frames that were rendering when the server stopped go back to the queue. */
  async requeueRenderingFrames(): Promise<number> {
    const result = await this.db
      .updateTable('frames')
      .set({ state: 'queued', worker_id: null })
      .where('state', '=', 'rendering')
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  async requeueFailedFrames(jobId: string): Promise<number[]> {
    const failed = await this.listFrames(jobId, 'failed');
    await this.db
      .updateTable('frames')
      .set({ state: 'queued', attempts: 0, error: null, worker_id: null })
      .where('job_id', '=', jobId)
      .where('state', '=', 'failed')
      .execute();
    return failed.map((f) => f.number);
  }

  async frameCounts(jobId?: string): Promise<Map<string, FrameCounts>> {
    let query = this.db
      .selectFrom('frames')
      .select(['job_id', 'state', (eb) => eb.fn.countAll<number>().as('n')])
      .groupBy(['job_id', 'state']);
    if (jobId) query = query.where('job_id', '=', jobId);
    const counts = new Map<string, FrameCounts>();
    for (const row of await query.execute()) {
      let c = counts.get(row.job_id);
      if (!c) counts.set(row.job_id, (c = { total: 0, queued: 0, rendering: 0, done: 0, failed: 0 }));
      c[row.state as FrameState] = Number(row.n);
      c.total += Number(row.n);
    }
    return counts;
  }

  // ---- workers -----------------------------------------------------------------

  async upsertWorker(worker: Pick<WorkerRow, 'id' | 'name' | 'host' | 'threads' | 'blender_version'>): Promise<WorkerRow> {
    const at = now();
    return this.db
      .insertInto('workers')
      .values({ ...worker, frames_rendered: 0, render_ms_total: 0, enabled: 1, first_seen_at: at, last_seen_at: at })
      .onConflict((oc) =>
        oc.column('id').doUpdateSet({
          name: worker.name,
          host: worker.host,
          threads: worker.threads,
          blender_version: worker.blender_version,
          last_seen_at: at,
        }),
      )
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  async touchWorker(id: string): Promise<void> {
    await this.db.updateTable('workers').set({ last_seen_at: now() }).where('id', '=', id).execute();
  }

  async recordRenderedFrame(workerId: string, renderMs: number): Promise<WorkerRow | undefined> {
    return this.db
      .updateTable('workers')
      .set((eb) => ({
        frames_rendered: eb('frames_rendered', '+', 1),
        render_ms_total: eb('render_ms_total', '+', renderMs),
        last_seen_at: now(),
      }))
      .where('id', '=', workerId)
      .returningAll()
      .executeTakeFirst();
  }

  async setWorkerEnabled(id: string, enabled: boolean): Promise<WorkerRow | undefined> {
    return this.db.updateTable('workers').set({ enabled: enabled ? 1 : 0 }).where('id', '=', id).returningAll().executeTakeFirst();
  }

  async listWorkers(): Promise<WorkerRow[]> {
    return this.db.selectFrom('workers').selectAll().orderBy('name').execute();
  }

  async getWorker(id: string): Promise<WorkerRow | undefined> {
    return this.db.selectFrom('workers').selectAll().where('id', '=', id).executeTakeFirst();
  }
}
