import type { TagSchedule, TagScheduleInput, TagScheduleView } from '../protocol/index.ts';
import type { TagScheduleRow } from '../store/index.ts';
import type { ConnectedWorker } from './connected-worker.ts';
import { FarmError } from './errors.ts';
import { now, type FarmState } from './state.ts';

/**
 * Schedules set on the server per worker tag ("room-2 renders Mon-Fri 18:00-08:00"). The
 * server cannot read them itself: they are hours in each worker's own local time. So it
 * keeps them, sends each worker those of its tags (before its welcome, and again whenever
 * they or its tags change), and the worker says when it sleeps, as for its own schedule.
 */
export class TagSchedules {
  /** The stored schedules by tag, read once at start: every worker connection asks for them. */
  private readonly byTag = new Map<string, TagScheduleRow>();

  constructor(private readonly state: FarmState) {}

  async load(): Promise<void> {
    for (const row of await this.state.store.tagSchedules.list()) this.byTag.set(row.tag, row);
  }

  list(): TagScheduleView[] {
    return [...this.byTag.values()].sort((a, b) => a.tag.localeCompare(b.tag)).map((row) => this.view(row));
  }

  /** Sets (or replaces) a tag's schedule; the connected workers carrying the tag follow it at once. */
  async set(tag: string, input: TagScheduleInput): Promise<TagScheduleView> {
    const row = await this.state.store.tagSchedules.put({ tag, schedule: input.schedule, stop: input.stop, updated_at: now() });
    this.byTag.set(tag, row);
    this.state.log.info({ tag, schedule: row.schedule, stop: row.stop }, 'tag schedule set');
    this.sendToCarriers(tag);
    return this.view(row);
  }

  /** Removes a tag's schedule: its workers go back to their own schedules. */
  async clear(tag: string): Promise<void> {
    if (!(await this.state.store.tagSchedules.delete(tag))) throw new FarmError('TAG_SCHEDULE_NOT_FOUND', `tag ${tag} has no schedule`);
    this.byTag.delete(tag);
    this.state.log.info({ tag }, 'tag schedule cleared');
    this.sendToCarriers(tag);
  }

  /** Tells a worker the schedules of the tags it carries now (it connected, or its tags changed). */
  sendTo(worker: ConnectedWorker): void {
    worker.link.send({ type: 'tag_schedules', schedules: this.forTags(worker.tags) });
  }

  private forTags(tags: readonly string[]): TagSchedule[] {
    return tags.flatMap((tag) => {
      const row = this.byTag.get(tag);
      return row ? [{ tag, schedule: row.schedule, stop: row.stop as TagSchedule['stop'] }] : [];
    });
  }

  private sendToCarriers(tag: string): void {
    for (const worker of this.state.workers.values()) if (worker.tags.includes(tag)) this.sendTo(worker);
  }

  private view(row: TagScheduleRow): TagScheduleView {
    const workers = [...this.state.workers.values()].filter((w) => w.tags.includes(row.tag)).map((w) => w.row.name);
    return { tag: row.tag, schedule: row.schedule, stop: row.stop as TagSchedule['stop'], updatedAt: row.updated_at, workers: workers.sort() };
  }
}
