import { z } from 'zod';

/**
 * A schedule: the hours a worker renders, in the worker machine's local time, e.g.
 * `Mon-Fri 18:00-08:00; Sat-Sun` (weekday nights and whole weekends). The worker setting
 * `schedule` and the server's schedules per tag (src/protocol/tag-schedules.ts) are both
 * written so. Pure: the time is always passed in, so tests choose it.
 *
 * Grammar: entries separated by `;`. An entry is days and an optional time range:
 * `Mon`, `Mon-Fri`, `Mon,Wed,Fri` or `Sat-Sun`, then `HH:MM-HH:MM`. Without a time range the
 * whole day counts. A range that ends at or before its start runs past midnight and
 * belongs to the day it starts on: `Fri 18:00-08:00` is Friday 18:00 to Saturday 08:00.
 */

const DAY_NAMES = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
const MINUTES_PER_DAY = 24 * 60;
const MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY;

/** A schedule's text, checked by parsing it; the message names the part that is wrong. */
export const scheduleTextSchema = z
  .string()
  .trim()
  .max(1000)
  .superRefine((text, context) => {
    try {
      parseSchedule(text);
    } catch (error) {
      context.addIssue({ code: 'custom', message: `not a schedule like "Mon-Fri 18:00-08:00; Sat-Sun": ${(error as Error).message}` });
    }
  });

/** What a worker does when its hours end mid-frame: `finish` that frame first, or hand it back `now`. */
export const scheduleStopSchema = z.enum(['finish', 'now']);
export type ScheduleStop = z.infer<typeof scheduleStopSchema>;

/** Whether the worker renders, per minute of the week from Monday 00:00. */
export interface Schedule {
  text: string;
  awake: Uint8Array;
}

/** Parses a schedule; throws an Error that names the part it could not read. */
export function parseSchedule(text: string): Schedule {
  const awake = new Uint8Array(MINUTES_PER_WEEK);
  const entries = text.split(';').map((entry) => entry.trim()).filter((entry) => entry !== '');
  if (entries.length === 0) throw new Error('a schedule needs at least one entry, e.g. "Mon-Fri 18:00-08:00; Sat-Sun"');
  for (const entry of entries) {
    const match = /^(\S+)(?:\s+(\S+))?$/.exec(entry);
    if (!match) throw new Error(`"${entry}": expected days and an optional time range, e.g. "Mon-Fri 18:00-08:00"`);
    const days = parseDays(match[1]!, entry);
    const [from, to] = match[2] === undefined ? [0, MINUTES_PER_DAY] : parseHours(match[2], entry);
    const length = to > from ? to - from : to + MINUTES_PER_DAY - from;
    for (const day of days) {
      const start = day * MINUTES_PER_DAY + from;
      for (let minute = 0; minute < length; minute++) awake[(start + minute) % MINUTES_PER_WEEK] = 1;
    }
  }
  return { text, awake };
}

export interface ScheduleState {
  awake: boolean;
  /** When it next changes (local wall-clock time); null for a schedule awake (or asleep) all week. */
  changesAt: Date | null;
}

/** Whether the schedule is awake at `now`, and until when. */
export function scheduleAt(schedule: Schedule, now: Date): ScheduleState {
  const minute = minuteOfWeek(now);
  const awake = schedule.awake[minute] === 1;
  for (let ahead = 1; ahead <= MINUTES_PER_WEEK; ahead++) {
    if ((schedule.awake[(minute + ahead) % MINUTES_PER_WEEK] === 1) !== awake) return { awake, changesAt: wallClockAhead(now, ahead) };
  }
  return { awake, changesAt: null };
}

/** "HH:MM" of a local time, as the UI and logs show when a worker wakes. */
export function clockTime(date: Date): string {
  return `${String(date.getHours()).padStart(2, '0')}:${String(date.getMinutes()).padStart(2, '0')}`;
}

function minuteOfWeek(date: Date): number {
  const day = (date.getDay() + 6) % 7; // getDay() counts from Sunday
  return day * MINUTES_PER_DAY + date.getHours() * 60 + date.getMinutes();
}

/**
 * The start of the minute `ahead` minutes of wall-clock time after `now`'s minute. Built from
 * the local date and time, not by adding milliseconds, so a daylight-saving change between
 * now and then does not shift "18:00" to 17:00 or 19:00.
 */
function wallClockAhead(now: Date, ahead: number): Date {
  const total = now.getHours() * 60 + now.getMinutes() + ahead;
  return new Date(now.getFullYear(), now.getMonth(), now.getDate() + Math.floor(total / MINUTES_PER_DAY), Math.floor((total % MINUTES_PER_DAY) / 60), total % 60);
}

function parseDays(text: string, entry: string): number[] {
  const days = new Set<number>();
  for (const part of text.toLowerCase().split(',')) {
    const [first, last, extra] = part.split('-');
    if (extra !== undefined) throw new Error(`"${entry}": "${part}" is not a day or a range of days like Mon-Fri`);
    const from = dayIndex(first!, entry);
    const to = last === undefined ? from : dayIndex(last, entry);
    // Fri-Mon wraps over the weekend.
    for (let day = from; ; day = (day + 1) % 7) {
      days.add(day);
      if (day === to) break;
    }
  }
  return [...days];
}

function dayIndex(name: string, entry: string): number {
  const index = DAY_NAMES.indexOf(name.slice(0, 3) as (typeof DAY_NAMES)[number]);
  const known = index >= 0 && (name.length === 3 || fullDayName(index).startsWith(name));
  if (!known) throw new Error(`"${entry}": unknown day "${name}" (use Mon, Tue, Wed, Thu, Fri, Sat, Sun)`);
  return index;
}

const fullDayName = (index: number) => ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'][index]!;

function parseHours(text: string, entry: string): [number, number] {
  const match = /^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$/.exec(text);
  if (!match) throw new Error(`"${entry}": "${text}" is not a time range like 18:00-08:00`);
  const from = toMinutes(Number(match[1]), Number(match[2]), entry);
  const to = toMinutes(Number(match[3]), Number(match[4]), entry);
  if (from === MINUTES_PER_DAY) throw new Error(`"${entry}": a time range cannot start at 24:00`);
  if (from === to % MINUTES_PER_DAY && to !== MINUTES_PER_DAY) {
    throw new Error(`"${entry}": ${text} is empty; leave the time range out for the whole day`);
  }
  return [from, to === MINUTES_PER_DAY ? MINUTES_PER_DAY : to];
}

function toMinutes(hours: number, minutes: number, entry: string): number {
  if (minutes > 59 || hours > 24 || (hours === 24 && minutes > 0)) throw new Error(`"${entry}": ${hours}:${String(minutes).padStart(2, '0')} is not a time of day`);
  return hours * 60 + minutes;
}
