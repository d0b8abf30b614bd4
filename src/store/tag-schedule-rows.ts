import type { Kysely, Selectable } from 'kysely';
import type { Database, TagSchedulesTable } from './tables.ts';

export type TagScheduleRow = Selectable<TagSchedulesTable>;

/** The schedules set on the server per worker tag; they outlive restarts. */
export class TagScheduleRows {
  constructor(private readonly db: Kysely<Database>) {}

  list(): Promise<TagScheduleRow[]> {
    return this.db.selectFrom('tag_schedules').selectAll().orderBy('tag').execute();
  }

  /** Sets a tag's schedule, replacing the one it had. */
  put(row: TagScheduleRow): Promise<TagScheduleRow> {
    return this.db
      .insertInto('tag_schedules')
      .values(row)
      .onConflict((c) => c.column('tag').doUpdateSet({ schedule: row.schedule, stop: row.stop, updated_at: row.updated_at }))
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  /** Removes a tag's schedule; false when it had none. */
  async delete(tag: string): Promise<boolean> {
    const result = await this.db.deleteFrom('tag_schedules').where('tag', '=', tag).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }
}
