/**
 * The farm paces progress reports by its size (src/farm/progress-pace.ts): the rule alone,
 * the server telling scripted workers as the farm grows and shrinks, and a real worker
 * rendering with real Blender sending no more reports than it is told.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PROGRESS_STEPS_MS, progressInterval } from '../src/farm/progress-pace.ts';
import { readFile } from 'node:fs/promises';
import { startTestFarm, submitBlend, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { makeTestScene } from '../testkit/scenes.ts';
import { until } from './helpers/processes.ts';
import { ScriptedWorker } from './helpers/scripted-worker.ts';

describe('progressInterval', () => {
  it('keeps a small farm at 250 ms', () => {
    for (const workers of [0, 1, 100, 250]) assert.equal(progressInterval(250, workers, 1000), 250, `${workers} workers`);
  });

  it('takes the shortest doubling step within the budget as the farm grows', () => {
    assert.equal(progressInterval(250, 251, 1000), 500);
    assert.equal(progressInterval(250, 2000, 1000), 2000, '2,000 workers report once in 2 s: 1,000 reports a second');
    assert.equal(progressInterval(500, 5000, 1000), 8000);
    assert.equal(progressInterval(250, 10_000_000, 1000), PROGRESS_STEPS_MS.at(-1), 'the longest step is the limit');
  });

  it('steps back down only well under the budget, so a farm at a step boundary does not flap', () => {
    assert.equal(progressInterval(500, 250, 1000), 500, 'at 100 % of the budget at 250 ms: stays');
    assert.equal(progressInterval(500, 200, 1000), 500, 'at 80 %: stays');
    assert.equal(progressInterval(500, 187, 1000), 250, 'at 75 %: steps down');
    assert.equal(progressInterval(2000, 700, 1000), 1000, 'down as far as is comfortable, not further');
    assert.equal(progressInterval(2000, 900, 1000), 2000, 'at 90 % of the budget at 1 s: stays');
    assert.equal(progressInterval(2000, 0, 1000), 250);
  });
});

describe('the farm paces its workers', () => {
  let farm: TestFarm;
  before(async () => {
    // A budget of one report a second: one worker reports each second, five each 8 s.
    farm = await startTestFarm({ server: { progress_reports_per_second: 1 } });
  });
  after(() => farm.close());

  it('tells every worker when the interval steps, and welcomes newcomers with it', async () => {
    const first = await ScriptedWorker.connect(farm, { name: 'first' });
    assert.equal((await first.next('welcome')).progressMs, 1000);
    const second = await ScriptedWorker.connect(farm, { name: 'second' });
    assert.equal((await second.next('welcome')).progressMs, 2000);
    assert.equal((await first.next('pace')).progressMs, 2000);
    assert.equal(second.received.filter((m) => m.type === 'pace').length, 0, 'the welcome already said it');

    const more = await Promise.all([3, 4, 5].map((n) => ScriptedWorker.connect(farm, { name: `w${n}` })));
    const lastPace = (worker: ScriptedWorker) => worker.received.filter((m) => m.type === 'pace').at(-1);
    await until(() => lastPace(first)?.progressMs === 8000, 10_000, 'the first worker told 8 s');

    // Two workers fit at 2 s, but only just: they step down to 4 s, under 75 % of the budget.
    for (const worker of more) worker.close();
    await until(() => lastPace(first)?.progressMs === 4000, 10_000, 'the first worker told 4 s');
    assert.equal(lastPace(second)?.progressMs, 4000);
    second.close();
    await until(() => lastPace(first)?.progressMs === 2000, 10_000, 'the first worker told 2 s');
    first.close();
    await until(() => farm.server.farm.progressIntervalMs === 250, 10_000, 'an empty farm back at 250 ms');
  });
});

describe('a real worker follows the pace', () => {
  let farm: TestFarm;
  before(async () => {
    farm = await startTestFarm({ server: { progress_reports_per_second: 1 } });
  });
  after(() => farm.close());

  it('reports a frame of several seconds once a second when told to, not every 250 ms', async () => {
    // One worker on a budget of one report a second. The scene prints 30 progress lines
    // over 3 s, as a slow render does (Cycles on Blender 3.4 prints few in the background).
    farm.addWorker('real', { allow_scripts: true });
    await until(() => farm.server.farm.progressIntervalMs === 1000, 10_000, 'one worker paced at 1 s');
    let reports = 0;
    const original = farm.server.farm.workerProgress.bind(farm.server.farm);
    farm.server.farm.workerProgress = (...args) => {
      reports++;
      original(...args);
    };
    const blend = await makeTestScene({ frames: '1-1', misbehave: 'chatter:1' });
    const { body: job } = await submitBlend(farm.server.httpUrl, new Blob([await readFile(blend)]), { allowScripts: 'true' });
    const done = await waitForJob(farm.server, job.id, ['completed'], 120_000);
    const renderMs = done.averageFrameMs ?? 0;
    assert.ok(renderMs >= 3000, `the lines took 3 s (${renderMs} ms)`);
    assert.ok(reports >= 3, `it reported (${reports})`);
    assert.ok(reports <= Math.ceil(renderMs / 1000) + 1, `${reports} reports in ${renderMs} ms: at most one a second, where it would send 12 at 250 ms`);
  });
});
