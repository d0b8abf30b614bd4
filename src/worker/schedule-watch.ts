import { parseSchedule, scheduleAt, type Schedule } from './schedule.ts';

/** However far the next change is, the clock is read again this often (a suspended laptop, a clock set by hand). */
const RECHECK_MS = 60_000;

export interface ScheduleEvents {
  /** The schedule's hours ended: take no new frame until `until`. */
  asleep(until: Date): void;
  /** Its hours began again. */
  awake(): void;
}

/**
 * Follows a worker's `schedule` setting: reads the clock when the schedule next changes
 * (and at least every minute), and says when the worker falls asleep or wakes. Without a
 * schedule the worker is always awake and nothing is watched.
 */
export class ScheduleWatch {
  private readonly schedule: Schedule | null;
  private until: Date | null = null;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    text: string | undefined,
    private readonly events: ScheduleEvents,
    /** Injectable so tests choose the time. */
    private readonly clock: () => Date = () => new Date(),
  ) {
    this.schedule = text === undefined ? null : parseSchedule(text);
  }

  /** When the worker wakes again; null while it is awake (or has no schedule). */
  get asleepUntil(): Date | null {
    return this.until;
  }

  /** Reads the clock now (the watch also does so by itself) and reports a change since the last reading. */
  check(): void {
    clearTimeout(this.timer);
    if (!this.schedule || this.stopped) return;
    const now = this.clock();
    const { awake, changesAt } = scheduleAt(this.schedule, now);
    const wasAsleep = this.until !== null;
    // Every schedule has some hours, so one asleep now always has a time it wakes.
    this.until = awake ? null : changesAt;
    if (!awake && !wasAsleep) this.events.asleep(this.until!);
    if (awake && wasAsleep) this.events.awake();
    const wait = changesAt === null ? RECHECK_MS : Math.min(RECHECK_MS, Math.max(1000, changesAt.getTime() - now.getTime()));
    this.timer = setTimeout(() => this.check(), wait);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
