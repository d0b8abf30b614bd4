/**
 * How a worker's own schedule and the server's schedules for its tags combine: it renders
 * only in the hours every one of them allows. Pure functions and the watch, with the time
 * chosen by the test.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseSchedule } from '../src/protocol/index.ts';
import { intersect, sleepStateAt, type ApplicableSchedule } from '../src/worker/schedules-combined.ts';
import { ScheduleWatch } from '../src/worker/schedule-watch.ts';
import type { SleepState } from '../src/worker/schedules-combined.ts';

/** A local time in the week of Monday 7 December 2026 (day 0 = Monday). */
const at = (day: number, hours: number, minutes = 0) => new Date(2026, 11, 7 + day, hours, minutes);
const [TUE, WED, SAT] = [1, 2, 5];

const own = (text: string, stop: 'finish' | 'now' = 'finish'): ApplicableSchedule => ({ tag: null, schedule: parseSchedule(text), stop });
const tag = (name: string, text: string, stop: 'finish' | 'now' = 'finish'): ApplicableSchedule => ({ tag: name, schedule: parseSchedule(text), stop });

function stateAt(schedules: ApplicableSchedule[], when: Date) {
  return sleepStateAt(schedules, intersect(schedules), when);
}

describe('a worker\'s own schedule and its tags\' schedules', () => {
  // Its owner lets it render 09:00-23:00; room-2 renders on weekday nights (and the weekend from Friday night).
  const desk = own('Mon-Sun 09:00-23:00');
  const room = tag('room-2', 'Mon-Fri 18:00-08:00', 'now');
  const both = [desk, room];

  test('it renders only in the hours both allow: weekdays 18:00-23:00', () => {
    assert.deepEqual(stateAt(both, at(TUE, 19)), { asleep: null, nextChange: at(TUE, 23) });
    assert.equal(stateAt(both, at(TUE, 18)).asleep, null);
    assert.notEqual(stateAt(both, at(TUE, 23)).asleep, null);
    assert.notEqual(stateAt(both, at(SAT, 12)).asleep, null, 'room-2 has no Saturday daytime hours');
  });

  test('while asleep it says which schedules keep it so, and when all of them allow it again', () => {
    assert.deepEqual(stateAt(both, at(TUE, 12)).asleep, { until: at(TUE, 18), own: false, tags: ['room-2'], stop: 'now' }, "its own hours, not the room's");
    assert.deepEqual(stateAt(both, at(TUE, 23, 30)).asleep, { until: at(WED, 18), own: true, tags: [], stop: 'finish' }, 'the room renders at night, its owner does not let it');
    assert.deepEqual(stateAt(both, at(TUE, 8, 30)).asleep, { until: at(TUE, 18), own: true, tags: ['room-2'], stop: 'now' }, 'both asleep: any "now" wins');
  });

  test('the clock is read again when any schedule changes, not only when it wakes', () => {
    // At 08:30 both sleep; at 09:00 its own day begins, and only the room's hours keep it asleep.
    assert.deepEqual(stateAt(both, at(TUE, 8, 30)).nextChange, at(TUE, 9));
    assert.deepEqual(stateAt(both, at(TUE, 9)).asleep?.own, false);
  });

  test('schedules that share no hours keep it asleep with no time to wake', () => {
    const state = stateAt([own('Mon-Fri 09:00-17:00'), tag('room-2', 'Sat-Sun')], at(TUE, 12));
    assert.deepEqual(state.asleep, { until: null, own: false, tags: ['room-2'], stop: 'finish' });
  });

  test("a tag's schedule alone, and several tags at once", () => {
    assert.deepEqual(stateAt([room], at(TUE, 12)).asleep, { until: at(TUE, 18), own: false, tags: ['room-2'], stop: 'now' });
    const gpu = tag('gpu', 'Mon-Sun 20:00-06:00');
    assert.deepEqual(stateAt([room, gpu], at(TUE, 19)).asleep, { until: at(TUE, 20), own: false, tags: ['gpu'], stop: 'finish' });
    assert.equal(stateAt([room, gpu], at(TUE, 21)).asleep, null);
  });
});

describe('the schedule watch', () => {
  function watch(ownText: string | undefined, stop: 'finish' | 'now', clock: () => Date) {
    const changes: Array<{ now: SleepState | null; was: SleepState | null }> = [];
    const w = new ScheduleWatch({ text: ownText, stop }, { changed: (now, was) => changes.push({ now, was }) }, clock);
    return { w, changes };
  }

  test('tag schedules sent by the server put it to sleep and wake it, at once', () => {
    const { w, changes } = watch(undefined, 'finish', () => at(TUE, 12));
    w.check();
    assert.equal(changes.length, 0, 'no schedule: always awake, nothing to say');
    w.setTagSchedules([{ tag: 'room-2', schedule: 'Mon-Fri 18:00-08:00', stop: null }]);
    assert.deepEqual(changes.at(-1), { now: { until: at(TUE, 18), own: false, tags: ['room-2'], stop: 'finish' }, was: null });
    assert.deepEqual(w.asleep?.until, at(TUE, 18));
    w.setTagSchedules([]);
    assert.deepEqual(changes.at(-1)?.now, null, 'cleared: awake again');
    assert.equal(w.asleep, null);
    w.stop();
  });

  test("a tag's schedule without a stop of its own follows the worker's schedule_stop", () => {
    const { w } = watch(undefined, 'now', () => at(TUE, 12));
    w.setTagSchedules([{ tag: 'room-2', schedule: 'Mon-Fri 18:00-08:00', stop: null }]);
    assert.equal(w.asleep?.stop, 'now');
    w.setTagSchedules([{ tag: 'room-2', schedule: 'Mon-Fri 18:00-08:00', stop: 'finish' }]);
    assert.equal(w.asleep?.stop, 'finish');
    w.stop();
  });

  test('asleep by its own schedule, a tag schedule moves the wake-up time: told once, as a change', () => {
    const { w, changes } = watch('Mon-Sun 14:00-23:00', 'finish', () => at(TUE, 12));
    w.check();
    assert.deepEqual(changes.map((c) => c.now?.until), [at(TUE, 14)]);
    w.setTagSchedules([{ tag: 'room-2', schedule: 'Mon-Fri 18:00-08:00', stop: null }]);
    assert.equal(changes.length, 2);
    assert.deepEqual(changes[1], {
      now: { until: at(TUE, 18), own: true, tags: ['room-2'], stop: 'finish' },
      was: { until: at(TUE, 14), own: true, tags: [], stop: 'finish' },
    });
    w.setTagSchedules([{ tag: 'room-2', schedule: 'Mon-Fri 18:00-08:00', stop: null }]);
    w.check();
    assert.equal(changes.length, 2, 'the same schedules again: nothing new to say');
    w.stop();
  });
});
