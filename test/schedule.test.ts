import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { clockTime, parseSchedule, scheduleAt } from '../src/protocol/schedule.ts';

/** A local time in the week of Monday 7 December 2026 (day 0 = Monday). */
const at = (day: number, hours: number, minutes = 0) => new Date(2026, 11, 7 + day, hours, minutes);
const [MON, TUE, FRI, SAT, SUN] = [0, 1, 4, 5, 6];

describe('worker schedule', () => {
  const nightsAndWeekends = parseSchedule('Mon-Fri 18:00-08:00; Sat-Sun');

  test('awake on weekday nights, asleep in working hours, with when that changes', () => {
    assert.deepEqual(scheduleAt(nightsAndWeekends, at(TUE, 12, 30)), { awake: false, changesAt: at(TUE, 18) });
    assert.deepEqual(scheduleAt(nightsAndWeekends, at(TUE, 18)), { awake: true, changesAt: at(TUE + 1, 8) });
    assert.deepEqual(scheduleAt(nightsAndWeekends, at(TUE, 7, 59)), { awake: true, changesAt: at(TUE, 8) }, 'Monday night runs into Tuesday morning');
    assert.equal(scheduleAt(nightsAndWeekends, at(TUE, 8)).awake, false);
  });

  test('a night range belongs to the day it starts on; whole days need no hours', () => {
    assert.equal(scheduleAt(nightsAndWeekends, at(SAT, 3)).awake, true, 'Friday night into Saturday');
    assert.deepEqual(scheduleAt(nightsAndWeekends, at(FRI, 20)), { awake: true, changesAt: at(SUN + 1, 0) }, 'from Friday evening through the weekend');
    assert.deepEqual(scheduleAt(nightsAndWeekends, at(MON, 3)), { awake: false, changesAt: at(MON, 18) }, 'Sunday is whole, Monday morning is not');
  });

  test('day lists, wrapping day ranges, full day names and 24:00', () => {
    const schedule = parseSchedule('mon,Wednesday 09:00-24:00; Sat-Mon 12:00-13:00');
    assert.equal(scheduleAt(schedule, at(MON, 23, 59)).awake, true);
    assert.equal(scheduleAt(schedule, at(TUE, 10)).awake, false);
    assert.equal(scheduleAt(schedule, at(SUN, 12, 30)).awake, true, 'Sat-Mon covers Sunday');
    assert.equal(scheduleAt(schedule, at(FRI, 12, 30)).awake, false);
  });

  test('a schedule awake all week never changes', () => {
    assert.deepEqual(scheduleAt(parseSchedule('Mon-Sun'), at(TUE, 9)), { awake: true, changesAt: null });
  });

  test('the wake-up time is local wall-clock time, also across a daylight-saving change', () => {
    // 29 March 2026 is the last Sunday of March, when much of Europe moves its clocks on.
    const schedule = parseSchedule('Sun 18:00-20:00');
    const before = new Date(2026, 2, 29, 1, 0);
    const { changesAt } = scheduleAt(schedule, before);
    assert.equal(clockTime(changesAt!), '18:00');
    assert.equal(changesAt!.getDate(), 29);
  });

  test('names what it cannot read', () => {
    assert.throws(() => parseSchedule(''), /at least one entry/);
    assert.throws(() => parseSchedule('Mon-Fri 18:00-08:00; Sunday-ish'), /"Sunday-ish": unknown day "sunday"|unknown day/);
    assert.throws(() => parseSchedule('Mon-Fri 6pm-8am'), /"Mon-Fri 6pm-8am": "6pm-8am" is not a time range like 18:00-08:00/);
    assert.throws(() => parseSchedule('Mon 25:00-26:00'), /25:00 is not a time of day/);
    assert.throws(() => parseSchedule('Mon 08:00-08:00'), /is empty; leave the time range out for the whole day/);
    assert.throws(() => parseSchedule('Mon-Tue-Wed'), /is not a day or a range of days/);
    assert.throws(() => parseSchedule('Mon 18:00-08:00 extra'), /expected days and an optional time range/);
  });
});
