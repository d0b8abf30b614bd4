import SQLite from 'better-sqlite3';
import { Kysely, Migrator, sql, SqliteDialect, type Selectable } from 'kysely';
import { frameStateLetters, frameStatesLeadingTo, statesLeadingTo, type FrameCounts, type FrameState, type JobState } from '../protocol/index.ts';
import { CredentialRows } from './credential-rows.ts';
import { ProjectRows } from './project-rows.ts';
import { TagScheduleRows } from './tag-schedule-rows.ts';
import { GroupCommitDatabase } from './group-commit.ts';
import { migrationProvider } from './migrations.ts';
import type { Database, FramesTable, JobsTable, WorkersTable } from './tables.ts';

export type JobRow = Selectable<JobsTable>;
export type FrameRow = Selectable<FramesTable>;
/** A frame without its Blender log: what lists need (a log can be 64 KB, a job 100,000 frames). */
export type FrameSummaryRow = Omit<FrameRow, 'log'>;
const summaryColumns = ['job_id', 'number', 'state', 'worker_id', 'attempts', 'render_ms', 'file', 'sha256', 'error', 'finished_at', 'blender_version'] as const;
export type WorkerRow = Selectable<WorkersTable>;
export type NewJobRow = Omit<JobRow, 'seq'>;
/** What a done frame is stored with. */
export type FrameResult = Pick<FrameRow, 'worker_id' | 'render_ms' | 'file' | 'sha256'> & { log?: string; blender_version?: string | null };
/** What a failed attempt leaves on its frame. */
export type FrameFailure = { worker_id?: string | null; attempts: number; error: string; log?: string };

/** Frames are inserted in chunks: SQLite caps the number of bound variables per statement. */
const INSERT_CHUNK = 2000;

const now = () => new Date().toISOString();

/**
 * The farm's durable state: jobs, frames and workers in SQLite (WAL), through Kysely so
 * the same queries could run on PostgreSQL. Every method is one statement or one
 * transaction; callers never see SQL. Writes reach the disk in groups, one commit per turn
 * of the event loop (group-commit.ts); `committed()` tells when.
 */
export class Store {
  /**
   * Job rows, written through: jobs are few but read on every frame event (a 500-worker
   * farm finishes hundreds of frames a second). Rows are frozen so a cached one cannot be
   * changed behind the database's back.
   */
  private readonly jobs = new Map<string, Readonly<JobRow>>();
  /** Access tokens and browser sessions. */
  readonly credentials: CredentialRows;
  /** Project manifests. */
  readonly projects: ProjectRows;
  /** Schedules set per worker tag. */
  readonly tagSchedules: TagScheduleRows;

  private constructor(
    readonly db: Kysely<Database>,
    private readonly connection: GroupCommitDatabase,
  ) {
    this.credentials = new CredentialRows(db, () => this.committed());
    this.projects = new ProjectRows(db);
    this.tagSchedules = new TagScheduleRows(db);
  }

  /** `onCommitFailed`: writes that callers saw succeed could not be saved (disk full, I/O error). */
  static async open(file: string, onCommitFailed: (error: Error) => void = () => {}): Promise<Store> {
    const sqlite = new SQLite(file);
    // WAL keeps readers off the writer's back; NORMAL sync is durable across process
    // crashes (the case that matters here), only an OS crash can lose the last commit.
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('foreign_keys = ON');
    sqlite.pragma('busy_timeout = 5000');
    const connection = new GroupCommitDatabase(sqlite, onCommitFailed);
    const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: connection }) });
    const { error } = await new Migrator({ db, provider: migrationProvider }).migrateToLatest();
    if (error) throw new Error(`could not migrate the database ${file}: ${String(error)}`);
    await connection.committed();
    return new Store(db, connection);
  }

  /**
   * Writes share one transaction per turn of the event loop (group commit); this resolves
   * when every write made so far is on disk. Answer "saved" to anyone only after it.
   */
  committed(): Promise<void> {
    return this.connection.committed();
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

  /**
   * Moves a job to `state` only from a state the life cycle allows (compare-and-set in SQL,
   * as pg-boss does): the row as moved, or undefined when the job is gone or in a state
   * that cannot move there.
   */
  async moveJob(id: string, state: JobState, patch: Partial<JobRow> = {}): Promise<Readonly<JobRow> | undefined> {
    const row = await this.db
      .updateTable('jobs')
      .set({ ...patch, state })
      .where('id', '=', id)
      .where('state', 'in', statesLeadingTo(state))
      .returningAll()
      .executeTakeFirst();
    if (row) this.jobs.set(id, Object.freeze(row));
    return row;
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
          blender_version: null,
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

  /**
   * A job's frames as columns (all of them, or only those numbered in `numbers`), for the
   * web UI. SQLite builds each column as one JSON array, so no object is made per frame:
   * several times faster than listFrames on a 100,000-frame job.
   */
  async listFrameColumns(jobId: string, numbers?: readonly number[]): Promise<FrameColumnRows> {
    let query = this.db
      .selectFrom('frames')
      .select([
        sql<string>`json_group_array(number)`.as('numbers'),
        // One letter per frame, made by SQLite: half the time of an array of state names parsed and mapped.
        sql<string | null>`group_concat(${STATE_LETTER}, '')`.as('stateLetters'),
        sql<string>`json_group_array(worker_id)`.as('workerIds'),
        sql<string>`json_group_array(attempts)`.as('attempts'),
        sql<string>`json_group_array(render_ms)`.as('renderMs'),
        sql<string>`json_group_array(error)`.as('errors'),
        sql<string>`json_group_array(cast(round(unixepoch(finished_at, 'subsec') * 1000) as integer))`.as('finishedAt'),
      ])
      .where('job_id', '=', jobId);
    // One parameter whatever the count, so the statement is prepared once.
    if (numbers) query = query.where(sql<boolean>`number in (select value from json_each(${JSON.stringify(numbers)}))`);
    const { stateLetters, ...arrays } = await query.executeTakeFirstOrThrow();
    const columns = Object.fromEntries(Object.entries(arrays).map(([name, json]) => [name, JSON.parse(json)]));
    return inNumberOrder({ ...columns, stateLetters: stateLetters ?? '' } as FrameColumnRows);
  }

  /** A frame is handed to a worker (a split frame's tiles go to several: `workerId` null). */
  startFrame(jobId: string, number: number, workerId: string | null): Promise<FrameSummaryRow | undefined> {
    return this.moveFrame(jobId, number, 'rendering', { worker_id: workerId });
  }

  /** A frame is done: rendered whole, or stitched from its tiles. The first result wins. */
  finishFrame(jobId: string, number: number, result: FrameResult): Promise<FrameSummaryRow | undefined> {
    return this.moveFrame(jobId, number, 'done', { ...result, error: null, finished_at: new Date().toISOString() });
  }

  /** A frame failed for good, with the error of its last attempt. */
  failFrame(jobId: string, number: number, failure: FrameFailure): Promise<FrameSummaryRow | undefined> {
    return this.moveFrame(jobId, number, 'failed', failure);
  }

  /**
   * A frame is unfinished again: back in the queue, or still rendering while other tiles
   * of it are out. An attempt that failed leaves its count and error.
   */
  requeueFrame(jobId: string, number: number, state: 'queued' | 'rendering', failure: Partial<FrameFailure> = {}): Promise<FrameSummaryRow | undefined> {
    return this.moveFrame(jobId, number, state, { ...failure, worker_id: null });
  }

  /** Replaces a frame's log (a split frame's log gathers every tile's). */
  async setTileLogs(jobId: string, number: number, log: string): Promise<void> {
    await this.db.updateTable('frames').set({ log }).where('job_id', '=', jobId).where('number', '=', number).execute();
  }

  /**
   * Moves a frame to `state` only from a state its life cycle allows (compare-and-set) and
   * returns it as stored, without its log (hundreds of moves a second need not read back a
   * log each), so callers publish it without a query. Undefined: no such frame, or a move
   * the life cycle refuses (a done frame stays done).
   */
  private moveFrame(jobId: string, number: number, state: FrameState, patch: Partial<FrameRow>): Promise<FrameSummaryRow | undefined> {
    return this.db
      .updateTable('frames')
      .set({ ...patch, state })
      .where('job_id', '=', jobId)
      .where('number', '=', number)
      .where('state', 'in', frameStatesLeadingTo(state))
      .returning(summaryColumns)
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

  /** Frames that were rendering when the server stopped (or their job gave up) go back to the queue. */
  async requeueRenderingFrames(jobId?: string): Promise<number> {
    let query = this.db.updateTable('frames').set({ state: 'queued', worker_id: null }).where('state', '=', 'rendering');
    if (jobId !== undefined) query = query.where('job_id', '=', jobId);
    const result = await query.executeTakeFirst();
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
      .values({ ...worker, frames_rendered: 0, render_ms_total: 0, enabled: 1, tags_json: null, first_seen_at: at, last_seen_at: at })
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

  /** Tags set on the server for a worker; null goes back to the worker's own setting. */
  async setWorkerTags(id: string, tags: readonly string[] | null): Promise<WorkerRow | undefined> {
    return this.db.updateTable('workers').set({ tags_json: tags === null ? null : JSON.stringify(tags) }).where('id', '=', id).returningAll().executeTakeFirst();
  }

  async listWorkers(): Promise<WorkerRow[]> {
    return this.db.selectFrom('workers').selectAll().orderBy('name').execute();
  }

  async getWorker(id: string): Promise<WorkerRow | undefined> {
    return this.db.selectFrom('workers').selectAll().where('id', '=', id).executeTakeFirst();
  }
}

/** A frame's state as its letter (frameStateLetters), in SQL. */
const STATE_LETTER = sql.raw(`case state ${Object.entries(frameStateLetters).map(([state, letter]) => `when '${state}' then '${letter}'`).join(' ')} end`);

/** A job's frames as columns: entry i of each belongs to the frame `numbers[i]`, ascending. */
export interface FrameColumnRows {
  numbers: number[];
  /** One letter per frame (frameStateLetters). */
  stateLetters: string;
  workerIds: Array<string | null>;
  attempts: number[];
  renderMs: Array<number | null>;
  errors: Array<string | null>;
  /** Milliseconds since the Unix epoch. */
  finishedAt: Array<number | null>;
}

/**
 * SQLite aggregates rows in the order it reads them, the same for every column but not
 * necessarily by number (that depends on the index it picks): sorted here if need be.
 */
function inNumberOrder(columns: FrameColumnRows): FrameColumnRows {
  const { numbers, stateLetters, ...others } = columns;
  if (numbers.every((n, i) => i === 0 || numbers[i - 1]! < n)) return columns;
  const order = numbers.map((_, i) => i).sort((a, b) => numbers[a]! - numbers[b]!);
  const sorted = Object.entries({ numbers, ...others }).map(([name, values]: [string, unknown[]]) => [name, order.map((i) => values[i])]);
  return { ...Object.fromEntries(sorted), stateLetters: order.map((i) => stateLetters[i]).join('') } as FrameColumnRows;
}
