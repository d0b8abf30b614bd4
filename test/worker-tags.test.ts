/**
 * Worker tags set on the server (issue #15 item 1): through the API and `archenland
 * worker-tags`, they replace the worker's own setting, decide which jobs it takes, and
 * outlive its connection; --reset goes back to its own setting.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { apiPath, CLIENT_HEADER, type Worker } from '../src/protocol/index.ts';
import { fakeBlend } from '../testkit/api.ts';
import { startTestFarm, submitBlend, type TestFarm } from '../testkit/farm.ts';
import { launchBrowser } from './helpers/browser.ts';
import { ScriptedWorker } from './helpers/scripted-worker.ts';
import { runCli } from './helpers/processes.ts';


describe('worker tags set on the server', () => {
  let farm: TestFarm;
  const cli = (args: string[]) => runCli(farm.server, args);
  const workers = async () => (await (await fetch(`${farm.server.httpUrl}${apiPath('listWorkers')}`)).json()) as Worker[];

  before(async () => {
    farm = await startTestFarm();
  });
  after(() => farm?.close());

  it('replace the worker\'s own tags, decide the jobs it takes, and outlive its connection', async () => {
    const worker = await ScriptedWorker.connect(farm, { name: 'lab-07', tags: ['room-1'] });
    const set = await cli(['worker-tags', 'lab-07', 'gpu, room-2', '--json']);
    assert.equal(set.code, 0, set.stderr);
    const shown = JSON.parse(set.stdout) as Worker;
    assert.deepEqual([shown.tags, shown.tagsSetOnServer], [['gpu', 'room-2'], true]);

    // A job requiring gpu goes to it now.
    const { body } = await submitBlend(farm.server.httpUrl, new Blob([new Uint8Array(fakeBlend())]), { requiredTags: 'gpu' });
    worker.send({ type: 'ready' });
    assert.equal((await worker.next('render')).jobId, body.id);

    // Reconnecting (its setting still says room-1) keeps the tags set on the server.
    worker.close();
    const again = await ScriptedWorker.connect(farm, { name: 'lab-07', tags: ['room-1'], workerId: worker.workerId });
    assert.deepEqual((await workers()).find((w) => w.name === 'lab-07')?.tags, ['gpu', 'room-2']);

    const reset = await cli(['worker-tags', 'lab-07', '--reset']);
    assert.equal(reset.code, 0, reset.stderr);
    assert.match(reset.stdout, /tags room-1 \(its own setting\)/);
    again.close();
  });

  it('are edited on the workers page', async () => {
    const worker = await ScriptedWorker.connect(farm, { name: 'lab-09', tags: ['room-1'] });
    const chrome = await launchBrowser();
    try {
      const page = await chrome.browser.newPage();
      await page.goto(`${farm.server.httpUrl}/#/workers`);
      const row = page.locator(`[data-worker="${worker.workerId}"]`);
      await row.getByText('tags room-1').waitFor();
      await row.getByRole('button', { name: 'Edit the tags of lab-09' }).click();
      await row.getByRole('textbox').fill('GPU, room-3');
      await row.getByRole('button', { name: 'Save' }).click();
      await row.getByText('tags gpu, room-3').waitFor();
      await row.getByText('(set here)').waitFor();
      assert.deepEqual((await workers()).find((w) => w.name === 'lab-09')?.tags, ['gpu', 'room-3']);
      await row.getByRole('button', { name: 'Edit the tags of lab-09' }).click();
      await row.getByRole('button', { name: 'Use its own' }).click();
      await row.getByText('tags room-1').waitFor();
    } finally {
      await chrome.close();
      worker.close();
    }
  });

  it('refuses bad tags and unknown workers', async () => {
    const bad = await fetch(`${farm.server.httpUrl}${apiPath('setWorkerTags', { id: 'abcdef123456' })}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', [CLIENT_HEADER]: 'test' },
      body: JSON.stringify({ tags: ['GPU!'] }),
    });
    assert.equal(bad.status, 400);
    const unknown = await fetch(`${farm.server.httpUrl}${apiPath('setWorkerTags', { id: 'abcdef123456' })}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', [CLIENT_HEADER]: 'test' },
      body: JSON.stringify({ tags: ['gpu'] }),
    });
    assert.equal(unknown.status, 404);
    const usage = await cli(['worker-tags', 'lab-07', 'a b']);
    assert.equal(usage.code, 2, usage.stderr);
  });
});
