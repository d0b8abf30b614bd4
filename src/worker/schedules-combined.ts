import { clockTime, scheduleAt, type Asleep, type Schedule, type ScheduleStop } from '../protocol/index.ts';

/**
 * How a worker's schedules combine: its own `schedule` setting and the schedule the server
 * set for each of its tags all apply, and the worker renders only in the hours that every
 * one of them allows (the intersection). A lab machine in room-2 with its own "Mon-Sun
 * 09:00-23:00" and room-2's "Mon-Fri 18:00-08:00" renders weekdays 18:00-23:00. Pure: the
 * time is passed in.
 */

/** One schedule that applies to the worker. */
export interface ApplicableSchedule {
  /** null: the worker's own `schedule` setting; else the tag the server set it for. */
  tag: string | null;
  schedule: Schedule;
  /** What to do with a frame under way when this schedule's hours end. */
  stop: ScheduleStop;
}

/** Why and until when a worker sleeps. */
export interface SleepState {
  /** When every schedule allows it again (local wall-clock time); null: they share no hours. */
  until: Date | null;
  /** Its own schedule is among those keeping it asleep. */
  own: boolean;
  /** Tags whose schedules keep it asleep. */
  tags: string[];
  /** `now` when any schedule keeping it asleep says so: its frame goes back at once. */
  stop: ScheduleStop;
}

/** The minutes of the week every schedule allows: one awake-map, read with scheduleAt like a single schedule. */
export function intersect(schedules: readonly ApplicableSchedule[]): Schedule {
  const awake = new Uint8Array(schedules[0]!.schedule.awake.length).fill(1);
  for (const { schedule } of schedules) for (let minute = 0; minute < awake.length; minute++) awake[minute]! &= schedule.awake[minute]!;
  return { text: schedules.map((s) => s.schedule.text).join(' & '), awake };
}

/**
 * Whether the worker sleeps at `now` (null: awake), and when any schedule next changes, so
 * the watch reads the clock again then (which schedules keep it asleep may change before it
 * wakes). `combined` is intersect(schedules), computed once per set of schedules.
 */
export function sleepStateAt(
  schedules: readonly ApplicableSchedule[],
  combined: Schedule,
  now: Date,
): { asleep: SleepState | null; nextChange: Date | null } {
  let nextChange: Date | null = null;
  const asleepBy: ApplicableSchedule[] = [];
  for (const applicable of schedules) {
    const { awake, changesAt } = scheduleAt(applicable.schedule, now);
    if (!awake) asleepBy.push(applicable);
    if (changesAt && (!nextChange || changesAt < nextChange)) nextChange = changesAt;
  }
  if (asleepBy.length === 0) return { asleep: null, nextChange };
  const { changesAt: until } = scheduleAt(combined, now);
  return {
    asleep: {
      until,
      own: asleepBy.some((s) => s.tag === null),
      tags: asleepBy.flatMap((s) => (s.tag === null ? [] : [s.tag])),
      stop: asleepBy.some((s) => s.stop === 'now') ? 'now' : 'finish',
    },
    nextChange,
  };
}

/** A sleep state as the worker tells the server (protocol message `schedule`). */
export function asleepMessage(sleep: SleepState | null): Asleep | null {
  return sleep && { until: sleep.until?.toISOString() ?? null, own: sleep.own, tags: sleep.tags };
}

/** "until 18:00 (its schedule, tag room-2)", for the worker's log and messages. */
export function describeSleep(sleep: SleepState): string {
  const why = [...(sleep.own ? ['its schedule'] : []), ...sleep.tags.map((tag) => `tag ${tag}`)].join(', ');
  return `${sleep.until ? `until ${clockTime(sleep.until)}` : 'until a schedule changes (they share no hours)'} (${why})`;
}

/** Two sleep states say the same (so nothing needs telling). */
export function sameSleep(a: SleepState | null, b: SleepState | null): boolean {
  if (a === null || b === null) return a === b;
  return a.until?.getTime() === b.until?.getTime() && a.own === b.own && a.stop === b.stop && a.tags.join() === b.tags.join();
}
