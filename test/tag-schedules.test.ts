/**
 * Schedules per worker tag, set on the server (issue #15 item 3): through the API and
 * `archenland tag-schedule`, kept in SQLite across restarts, and sent to each connected
 * worker that carries the tag (before its welcome, and whenever they or its tags change).
 * The workers here speak the real protocol without Blender, so the test sees every message.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { apiPath, CLIENT_HEADER, type ServerToWorker, type TagScheduleView, type Worker } from '../src/protocol/index.ts';
import { startTestFarm, type TestFarm } from '../testkit/farm.ts';
import { stopServer } from './helpers/browser.ts';
import { runCli, until } from './helpers/processes.ts';
import { ScriptedWorker } from './helpers/scripted-worker.ts';

type TagSchedulesMessage = Extract<ServerToWorker, { type: 'tag_schedules' }>;

describe('schedules per worker tag, set on the server', () => {
  let farm: TestFarm;
  const cli = (args: string[]) => runCli(farm.server, args);
  const send = (method: string, path: string, body?: unknown) =>
    fetch(`${farm.server.httpUrl}${path}`, {
      method,
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), [CLIENT_HEADER]: 'test' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const list = async () => (await (await send('GET', apiPath('listTagSchedules'))).json()) as TagScheduleView[];
  /** The schedules the worker was told most recently. */
  const lastTold = (worker: ScriptedWorker) => (worker.received.filter((m) => m.type === 'tag_schedules').at(-1) as TagSchedulesMessage | undefined)?.schedules;
  const toldCount = (worker: ScriptedWorker) => worker.received.filter((m) => m.type === 'tag_schedules').length;

  before(async () => {
    farm = await startTestFarm();
  });
  after(() => farm?.close());

  it('are sent to the workers carrying the tag: before the welcome, and again at once when set or cleared', async () => {
    const lab = await ScriptedWorker.connect(farm, { name: 'lab-1', tags: ['room-2'] });
    const office = await ScriptedWorker.connect(farm, { name: 'office-1', tags: ['room-1'] });
    assert.deepEqual(lab.received.slice(0, 2).map((m) => m.type), ['tag_schedules', 'welcome'], 'its tags\' schedules come before the welcome');
    assert.deepEqual(lastTold(lab), []);

    const put = await send('PUT', apiPath('setTagSchedule', { tag: 'Room-2' }), { schedule: ' Mon-Fri 18:00-08:00; Sat-Sun ', stop: 'now' });
    assert.equal(put.status, 200);
    const view = (await put.json()) as TagScheduleView;
    assert.deepEqual({ ...view, updatedAt: undefined }, { tag: 'room-2', schedule: 'Mon-Fri 18:00-08:00; Sat-Sun', stop: 'now', updatedAt: undefined, workers: ['lab-1'] });
    await until(async () => toldCount(lab) === 2, 5000, 'lab-1 told the new schedule');
    assert.deepEqual(lastTold(lab), [{ tag: 'room-2', schedule: 'Mon-Fri 18:00-08:00; Sat-Sun', stop: 'now' }]);
    assert.equal(toldCount(office), 1, 'a worker without the tag is not told');

    // Replacing it: the stop left out goes back to each worker's own schedule_stop.
    await send('PUT', apiPath('setTagSchedule', { tag: 'room-2' }), { schedule: 'Mon-Sun 20:00-06:00' });
    await until(async () => toldCount(lab) === 3, 5000, 'lab-1 told the replacement');
    assert.deepEqual(lastTold(lab), [{ tag: 'room-2', schedule: 'Mon-Sun 20:00-06:00', stop: null }]);
    assert.deepEqual((await list()).map((s) => [s.tag, s.schedule, s.stop]), [['room-2', 'Mon-Sun 20:00-06:00', null]]);

    const cleared = await send('DELETE', apiPath('clearTagSchedule', { tag: 'room-2' }));
    assert.equal(cleared.status, 204);
    await until(async () => toldCount(lab) === 4, 5000, 'lab-1 told it is gone');
    assert.deepEqual(lastTold(lab), []);
    assert.deepEqual(await list(), []);
    lab.close();
    office.close();
  });

  it('follow a worker\'s tags when they are changed on the server', async () => {
    await send('PUT', apiPath('setTagSchedule', { tag: 'room-3' }), { schedule: 'Sat-Sun' });
    const worker = await ScriptedWorker.connect(farm, { name: 'lab-5', tags: ['room-1'] });
    assert.deepEqual(lastTold(worker), []);
    const moved = await send('PUT', apiPath('setWorkerTags', { id: worker.workerId }), { tags: ['room-3', 'gpu'] });
    assert.equal(moved.status, 200);
    await until(async () => toldCount(worker) === 2, 5000, 'told the schedules of its new tags');
    assert.deepEqual(lastTold(worker), [{ tag: 'room-3', schedule: 'Sat-Sun', stop: null }]);
    await send('PUT', apiPath('setWorkerTags', { id: worker.workerId }), { tags: null });
    await until(async () => toldCount(worker) === 3, 5000, 'told again when its tags went back to its own');
    assert.deepEqual(lastTold(worker), []);
    worker.close();
    await send('DELETE', apiPath('clearTagSchedule', { tag: 'room-3' }));
  });

  it('show on the worker why it sleeps, as it reports', async () => {
    const worker = await ScriptedWorker.connect(farm, { name: 'lab-7', tags: ['room-2'] });
    const asleep = { until: '2026-12-08T18:00:00.000Z', own: false, tags: ['room-2'] };
    worker.send({ type: 'schedule', asleep });
    const shown = async () => ((await (await send('GET', apiPath('listWorkers'))).json()) as Worker[]).find((w) => w.name === 'lab-7')!;
    await until(async () => (await shown()).asleep !== null, 5000, 'the worker shown asleep');
    assert.deepEqual((await shown()).asleep, asleep);
    assert.equal((await shown()).asleepUntil, asleep.until);
    const asleepGauge = async () => /^archenland_workers_asleep (\d+)$/m.exec(await (await send('GET', apiPath('metrics'))).text())?.[1];
    assert.equal(await asleepGauge(), '1', '/metrics counts it asleep');
    worker.send({ type: 'schedule', asleep: null });
    await until(async () => (await shown()).asleep === null, 5000, 'the worker shown awake');
    assert.equal(await asleepGauge(), '0');
    worker.close();
  });

  it('survive a restart of the server', async () => {
    await send('PUT', apiPath('setTagSchedule', { tag: 'room-4' }), { schedule: 'Mon-Fri 19:00-07:00', stop: 'finish' });
    const restart = await stopServer(farm);
    await restart();
    // fetch's first try may take a kept-alive socket the old server closed ("other side closed").
    await until(() => list().then(() => true, () => false), 5000, 'the restarted server to answer');
    assert.deepEqual((await list()).map((s) => [s.tag, s.schedule, s.stop]), [['room-4', 'Mon-Fri 19:00-07:00', 'finish']]);
    const worker = await ScriptedWorker.connect(farm, { name: 'lab-9', tags: ['room-4'] });
    assert.equal(worker.received[0]?.type, 'tag_schedules');
    assert.deepEqual(lastTold(worker), [{ tag: 'room-4', schedule: 'Mon-Fri 19:00-07:00', stop: 'finish' }]);
    worker.close();
    await send('DELETE', apiPath('clearTagSchedule', { tag: 'room-4' }));
  });

  it('refuse what is not a schedule, a tag or a stop, and clearing what is not set', async () => {
    const badSchedule = await send('PUT', apiPath('setTagSchedule', { tag: 'room-2' }), { schedule: 'Mon-Fri 6pm-8am' });
    assert.equal(badSchedule.status, 400);
    const answer = (await badSchedule.json()) as { code: string; error: string };
    assert.equal(answer.code, 'INVALID_REQUEST');
    assert.match(answer.error, /"6pm-8am" is not a time range like 18:00-08:00/);
    const cases: Array<[string, unknown]> = [
      [apiPath('setTagSchedule', { tag: 'room 2!' }), { schedule: 'Sat-Sun' }],
      [apiPath('setTagSchedule', { tag: 'room-2' }), { schedule: 'Sat-Sun', stop: 'later' }],
      [apiPath('setTagSchedule', { tag: 'room-2' }), { schedule: 'Sat-Sun', tags: ['x'] }],
      [apiPath('setTagSchedule', { tag: 'room-2' }), {}],
      [apiPath('setTagSchedule', { tag: 'room-2' }), { schedule: '' }],
    ];
    for (const [path, body] of cases) assert.equal((await send('PUT', path, body)).status, 400, `${path} ${JSON.stringify(body)}`);
    const unknown = await send('DELETE', apiPath('clearTagSchedule', { tag: 'room-8' }));
    assert.equal(unknown.status, 404);
    assert.equal(((await unknown.json()) as { code: string }).code, 'TAG_SCHEDULE_NOT_FOUND');
    assert.deepEqual(await list(), [], 'nothing was stored');
  });

  it('are set, shown, listed and cleared with archenland tag-schedule', async () => {
    const worker = await ScriptedWorker.connect(farm, { name: 'lab-11', tags: ['room-6'] });
    const set = await cli(['tag-schedule', 'room-6', 'Mon-Fri 18:00-08:00', '--stop', 'now']);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /tag room-6: renders Mon-Fri 18:00-08:00 \(frames under way: handed back\); followed now by lab-11/);
    await until(async () => toldCount(worker) === 2, 5000, 'the worker told');

    const listed = await cli(['tag-schedule']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^TAG\s+SCHEDULE\s+STOP\s+CONNECTED WORKERS\nroom-6\s+Mon-Fri 18:00-08:00\s+now\s+lab-11\n$/);
    const shown = await cli(['tag-schedule', 'room-6', '--json']);
    assert.equal((JSON.parse(shown.stdout) as TagScheduleView).schedule, 'Mon-Fri 18:00-08:00');

    const cleared = await cli(['tag-schedule', 'room-6', '--clear']);
    assert.equal(cleared.code, 0, cleared.stderr);
    assert.match(cleared.stdout, /tag room-6: schedule cleared/);
    assert.match((await cli(['tag-schedule', 'room-6'])).stdout, /tag room-6: no schedule/);
    const again = await cli(['tag-schedule', 'room-6', '--clear']);
    assert.equal(again.code, 1, 'the farm refused: nothing to clear');
    assert.match(again.stderr, /tag room-6 has no schedule/);

    // Mistakes are caught before anything is sent (exit 2).
    for (const args of [['room-6', 'Mon-Fri 6pm-8am'], ['room 6', 'Sat-Sun'], ['room-6', 'Sat-Sun', '--clear'], ['room-6', '--stop', 'now'], ['--clear']]) {
      const refused = await cli(['tag-schedule', ...args]);
      assert.equal(refused.code, 2, `${args.join(' ')}: ${refused.stderr}`);
    }
    assert.deepEqual(await list(), []);
    worker.close();
  });
});
