/**
 * Several Blender installations end to end: two real workers, one with a second
 * installation. Debian ships one Blender (3.4), so the second is that Blender behind a
 * launcher script that reports itself as 4.2.0 and notes each start: the farm goes by the
 * version an installation reports, and the note proves which executable rendered.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FrameLog, Job, JobDetail, Worker } from '../src/protocol/index.ts';
import { getJson, postJson } from '../testkit/api.ts';
import { startTestFarm, submitBlend, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { BLENDER, makeTestScene } from '../testkit/scenes.ts';
import { until } from './helpers/processes.ts';

describe('Blender versions (real Blender)', () => {
  let farm: TestFarm;
  let scene: Blob;
  let starts: string;

  before(async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'archenland-blenders-'));
    starts = path.join(dir, 'starts.log');
    const launcher = path.join(dir, 'blender-4.2');
    writeFileSync(
      launcher,
      `#!/bin/sh\nif [ "$1" = "--version" ]; then echo "Blender 4.2.0"; exit 0; fi\necho started >> '${starts}'\nexec '${BLENDER}' "$@"\n`,
    );
    chmodSync(launcher, 0o755);
    farm = await startTestFarm();
    farm.addWorker('one-blender');
    farm.addWorker('two-blenders', { blenders: { '4.2': launcher } });
    scene = new Blob([readFileSync(await makeTestScene({ frames: '1-4', width: 48, height: 36, samples: 4 }))]);
    await until(async () => (await api<Worker[]>('/api/workers')).filter((w) => w.state !== 'offline').length === 2, 30_000, 'both workers connected');
  });

  after(async () => {
    await farm?.close();
  });

  const api = <T>(route: string) => getJson<T>(farm.server.httpUrl, farm.server.tokens.user!, route);

  it('each worker reports its installations, the default first', async () => {
    const workers = await api<Worker[]>('/api/workers');
    const one = workers.find((w) => w.name === 'one-blender')!;
    const two = workers.find((w) => w.name === 'two-blenders')!;
    assert.equal(one.blenders.length, 1);
    assert.match(one.blenders[0]!, /^3\.4/);
    assert.deepEqual(two.blenders, [one.blenders[0], '4.2.0']);
  });

  it('a job asking for 4.2 renders only on the worker that has it, with that installation', async () => {
    const two = (await api<Worker[]>('/api/workers')).find((w) => w.name === 'two-blenders')!;
    const submitted = await submitBlend(farm.server.httpUrl, scene, { frames: '1-4', blender: '4.2' });
    assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    assert.equal(submitted.body.blenderRequested, '4.2');
    const done = await waitForJob(farm.server, submitted.body.id, ['completed', 'failed'], 180_000);
    assert.equal(done.state, 'completed', done.error ?? '');
    assert.equal(done.blender, '4.2');
    const frames = (await api<JobDetail>(`/api/jobs/${done.id}`)).frameList;
    assert.deepEqual(new Set(frames.map((f) => f.workerId)), new Set([two.id]));
    for (const frame of frames) assert.equal(frame.blenderVersion, '4.2.0', `frame ${frame.number}`);
    assert.equal((await api<FrameLog>(`/api/jobs/${done.id}/frames/2/log`)).blenderVersion, '4.2.0', 'the frame dialog reads it with the log');
    assert.ok(existsSync(starts), 'the 4.2 installation was started');
  });

  it('a job asking for nothing gets the release of the Blender that saved it, on every worker that has it', async () => {
    const submitted = await submitBlend(farm.server.httpUrl, scene, { frames: '1-6' });
    const done = await waitForJob(farm.server, submitted.body.id, ['completed', 'failed'], 180_000);
    assert.equal(done.state, 'completed', done.error ?? '');
    assert.equal(done.blender, done.scene?.savedWith, 'the file was saved with 3.4, which both workers have');
    assert.equal(done.blenderRequested, null);
    assert.deepEqual(done.scene?.problems.filter((p) => p.code === 'NEWER_BLENDER'), []);
    const frames = (await api<JobDetail>(`/api/jobs/${done.id}`)).frameList;
    for (const frame of frames) assert.match(frame.blenderVersion ?? '', /^3\.4/, `frame ${frame.number}`);
  });

  it('a job asking for a Blender no worker has says so, and waits', async () => {
    const submitted = await submitBlend(farm.server.httpUrl, scene, { frames: '1-2', blender: '9.1' });
    assert.equal(submitted.status, 201);
    let job: Job | undefined;
    await until(async () => /no connected worker has it/.test((job = await api<Job>(`/api/jobs/${submitted.body.id}`)).notice ?? ''), 30_000, 'the notice');
    assert.match(job!.notice!, /renders with Blender 9\.1, and no connected worker has it \(they have .*4\.2\.0/);
    assert.equal(job!.state, 'probing', 'not even read: no worker may read it with 9.1');
    await postJson(farm.server.httpUrl, farm.server.tokens.user!, `/api/jobs/${submitted.body.id}/cancel`);
  });

  it('refuses a version that is not one', async () => {
    const submitted = await submitBlend(farm.server.httpUrl, scene, { blender: 'latest' });
    assert.equal(submitted.status, 400);
    assert.match(JSON.stringify(submitted.body), /a Blender version like/);
  });
});
