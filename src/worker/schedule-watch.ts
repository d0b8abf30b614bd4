import { parseSchedule, type ScheduleStop, type TagSchedule } from '../protocol/index.ts';
import { intersect, sameSleep, sleepStateAt, type ApplicableSchedule, type SleepState } from './schedules-combined.ts';

/** However far the next change is, the clock is read again this often (a suspended laptop, a clock set by hand). */
const RECHECK_MS = 60_000;

export interface ScheduleEvents {
  /**
   * Whether the worker sleeps changed: it fell asleep (`was` null), woke (`now` null), or
   * sleeps on with another wake-up time, other reasons or another stop (both set).
   */
  changed(now: SleepState | null, was: SleepState | null): void;
}

/**
 * Follows a worker's schedules: its own `schedule` setting and the server's schedules for
 * its tags (setTagSchedules, whenever the server sends them). Reads the clock when one of
 * them next changes (and at least every minute) and says when the worker falls asleep,
 * wakes, or sleeps on for other reasons. With no schedule at all the worker is always awake
 * and nothing is watched.
 */
export class ScheduleWatch {
  private readonly own: ApplicableSchedule | null;
  private schedules: ApplicableSchedule[] = [];
  private combined: ApplicableSchedule['schedule'] | null = null;
  private state: SleepState | null = null;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** The worker's schedule_stop: for its own schedule, and for a tag's that sets none. */
  private readonly ownStop: ScheduleStop;

  constructor(
    own: { text: string | undefined; stop: ScheduleStop },
    private readonly events: ScheduleEvents,
    /** Injectable so tests choose the time. */
    private readonly clock: () => Date = () => new Date(),
  ) {
    this.ownStop = own.stop;
    this.own = own.text === undefined ? null : { tag: null, schedule: parseSchedule(own.text), stop: own.stop };
    this.use([]);
  }

  /** Why and until when the worker sleeps; null while it is awake (or has no schedule). */
  get asleep(): SleepState | null {
    return this.state;
  }

  /** The server's schedules for this worker's tags, replacing those it sent before; the clock is read again at once. */
  setTagSchedules(schedules: readonly TagSchedule[]): void {
    this.use(schedules.map((s) => ({ tag: s.tag, schedule: parseSchedule(s.schedule), stop: s.stop ?? this.ownStop })));
    this.check();
  }

  /** Reads the clock now (the watch also does so by itself) and reports a change since the last reading. */
  check(): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    const was = this.state;
    if (!this.combined) {
      this.state = null;
      if (was) this.events.changed(null, was);
      return;
    }
    const now = this.clock();
    const { asleep, nextChange } = sleepStateAt(this.schedules, this.combined, now);
    this.state = asleep;
    if (!sameSleep(asleep, was)) this.events.changed(asleep, was);
    const wait = nextChange === null ? RECHECK_MS : Math.min(RECHECK_MS, Math.max(1000, nextChange.getTime() - now.getTime()));
    this.timer = setTimeout(() => this.check(), wait);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private use(tagSchedules: ApplicableSchedule[]): void {
    this.schedules = this.own ? [this.own, ...tagSchedules] : tagSchedules;
    this.combined = this.schedules.length > 0 ? intersect(this.schedules) : null;
  }
}
