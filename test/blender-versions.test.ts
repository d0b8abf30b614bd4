/**
 * Which Blender renders a job (pure): versions compared, the closest installation not
 * older than the file's chosen, NEWER_BLENDER raised by the server, and only workers with
 * the job's Blender given its frames.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chooseBlender, compareVersions, pickInstalled, versionMatches, type SceneInfo } from '../src/protocol/index.ts';
import { blenderForJob } from '../src/jobs/index.ts';
import { Scheduler } from '../src/scheduler/index.ts';
import { installationFor, reportedVersions } from '../src/worker/blender/installations.ts';

describe('Blender versions', () => {
  it('compares releases by number, not as text', () => {
    assert.ok(compareVersions('4.10', '4.2') > 0);
    assert.ok(compareVersions('3.6.5', '4.0') < 0);
    assert.equal(compareVersions('4.2', '4.2.3'), 0, 'over the parts both name');
    assert.ok(versionMatches('4.2.1', '4.2') && versionMatches('4.2.1', '4.2.1'));
    assert.ok(!versionMatches('4.2.1', '4.2.0') && !versionMatches('4.21.0', '4.2') && !versionMatches('4.2', '4.2.1'));
  });

  it('gives a job the oldest release not older than its file, else the newest with a warning', () => {
    const farm = ['3.4.1', '4.2.3', '3.6.0', '4.2.1'];
    assert.deepEqual(chooseBlender(null, '3.4', farm), { version: '3.4', olderThanFile: false });
    assert.deepEqual(chooseBlender(null, '3.5', farm), { version: '3.6', olderThanFile: false });
    assert.deepEqual(chooseBlender(null, '4.1', farm), { version: '4.2', olderThanFile: false });
    assert.deepEqual(chooseBlender(null, '4.4', farm), { version: '4.2', olderThanFile: true });
    assert.deepEqual(chooseBlender(null, null, farm), { version: '4.2', olderThanFile: false }, 'a file of unknown age: the newest');
    assert.equal(chooseBlender(null, '3.4', []), null, 'a farm that reports no version restricts nothing');
  });

  it('keeps the version a job asked for, even one no worker has yet', () => {
    assert.deepEqual(chooseBlender('4.2', '3.4', ['3.4.1']), { version: '4.2', olderThanFile: false });
    assert.deepEqual(chooseBlender('3.4', '4.2', ['3.4.1', '4.2.0']), { version: '3.4', olderThanFile: true });
  });

  it('raises NEWER_BLENDER on the server, replacing what the probing Blender said', () => {
    const scene = { savedWith: '4.4', problems: [{ code: 'NEWER_BLENDER', severity: 'warning', message: 'from the probe' }] } as SceneInfo;
    const older = blenderForJob(null, scene, ['4.2.1']);
    assert.equal(older.version, '4.2');
    assert.deepEqual(older.scene.problems.map((p) => p.code), ['NEWER_BLENDER']);
    assert.match(older.scene.problems[0]!.message, /saved by Blender 4\.4, newer than the Blender 4\.2 it renders with \(the newest any worker has\)/);
    const fitting = blenderForJob(null, scene, ['4.2.1', '4.4.0']);
    assert.deepEqual([fitting.version, fitting.scene.problems], ['4.4', []], 'a worker has a fitting Blender: no warning');
  });

  it('picks the newest installation of the wanted release on a worker, the default when none is named', () => {
    const installed = [
      { path: '/usr/bin/blender', version: '3.4.1' },
      { path: '/opt/b42a', version: '4.2.0' },
      { path: '/opt/b42b', version: '4.2.3' },
    ];
    assert.equal(installationFor(installed, null)?.path, '/usr/bin/blender');
    assert.equal(installationFor(installed, '4.2')?.path, '/opt/b42b');
    assert.equal(installationFor(installed, '4.2.0')?.path, '/opt/b42a');
    assert.equal(installationFor(installed, '4.3'), undefined);
    assert.equal(pickInstalled(installed, '3')?.version, '3.4.1');
    assert.deepEqual(reportedVersions(installed), ['3.4.1', '4.2.3', '4.2.0'], 'the default first, then newest first');
  });

  it('hands a job only to workers that have its Blender', () => {
    const scheduler = new Scheduler({ maxAttempts: 3, blockAfterFailures: 3 });
    for (const [id, versions] of [['old', ['3.4.1']], ['both', ['3.4.1', '4.2.0']]] as const) {
      scheduler.setWorkerBlenders(id, versions);
      scheduler.workerReady(id);
    }
    scheduler.addJob({ jobId: 'new', priority: 0, seq: 1, frames: [1, 2, 3], blender: '4.2' });
    const handed = scheduler.dispatch();
    assert.deepEqual(handed.map((a) => a.workerId), ['both']);
    scheduler.workerReady('both');
    assert.deepEqual(scheduler.dispatch().map((a) => a.workerId), ['both'], 'the old one stays idle');
    assert.equal(scheduler.hopelessReason('new', ['old']), null, 'no worker with its Blender connected: it waits, it has not failed');
  });
});
