import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { Job, JobDetail, Worker } from '../src/protocol/index.ts';
import { startTestFarm, waitForJob, type TestFarm } from '../testkit/farm.ts';
import { makeTestScene } from '../testkit/scenes.ts';
import { freePort } from './helpers/processes.ts';

const BIN = fileURLToPath(new URL('../bin/archenland.js', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real command in its own process; stdin gets `input` and is then closed (as in scripts). */
function cli(args: string[], opts: { cwd?: string; env?: Record<string, string>; input?: string } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const env: Record<string, string | undefined> = { ...process.env, ARCHENLAND_SERVER: undefined, ARCHENLAND_TOKEN: undefined, ...opts.env };
    const child = spawn(process.execPath, [BIN, ...args], { cwd: opts.cwd ?? tmpdir(), env: env as NodeJS.ProcessEnv });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.stdin.end(opts.input ?? '');
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

const json = <T>(run: Run): T => {
  assert.equal(run.code, 0, `exit ${run.code}: ${run.stderr}`);
  return JSON.parse(run.stdout) as T;
};


describe('archenland job and worker commands (real processes, real Blender)', () => {
  let farm: TestFarm;
  let dir: string;
  let S: string[];
  let job: Job;

  before(async () => {
    farm = await startTestFarm({ workers: 1, server: { frame_retries: 0 } });
    dir = mkdtempSync(join(tmpdir(), 'archenland-cli-control-'));
    copyFileSync(await makeTestScene({ frames: '1-3', width: 32, height: 24, samples: 2 }), join(dir, 'scene.blend'));
    copyFileSync(await makeTestScene({ frames: '1-1', width: 32, height: 24, samples: 2, denoise: true }), join(dir, 'denoise.blend'));
    S = ['--server', farm.server.httpUrl];
  });
  after(async () => farm?.close());

  it('submit --hold, edit by id prefix, priority (negative too), resume', async () => {
    const submitted = json<Job>(await cli(['submit', 'scene.blend', '--hold', '--json', ...S], { cwd: dir }));
    const held = await waitForJob(farm.server, submitted.id, ['paused']);
    assert.equal(held.counts.total, 3);

    const prefix = submitted.id.slice(0, 6);
    const edited = json<Job>(await cli(['edit', prefix, '--frames', '2-3', '--samples', '1', '--name', 'shot 010', '--json', ...S]));
    assert.equal(edited.id, submitted.id);
    assert.equal(edited.counts.total, 2);
    assert.equal(edited.name, 'shot 010');
    assert.equal(edited.overrides.samples, 1);

    assert.equal(json<Job>(await cli(['priority', 'shot 010', '7', '--json', ...S])).priority, 7, 'found by name');
    const negative = await cli(['priority', submitted.id, '-5', ...S]);
    assert.equal(negative.code, 0, negative.stderr);
    assert.match(negative.stdout, /priority -5/);
    const tooHigh = await cli(['priority', submitted.id, '5000', ...S]);
    assert.equal(tooHigh.code, 2);
    assert.match(tooHigh.stderr, /between -1000 and 1000/);
    assert.equal((await cli(['edit', submitted.id, ...S])).code, 2, 'edit with nothing to change');
    const tiled = json<Job>(await cli(['edit', prefix, '--tiles', 'off', '--force-tiles', 'no', '--json', ...S]));
    assert.deepEqual(tiled.tiling, { requested: 'off', forced: false, blockers: [] });
    const badTiles = await cli(['edit', prefix, '--tiles', 'many', ...S]);
    assert.equal(badTiles.code, 2);
    assert.match(badTiles.stderr, /invalid tiles "many"/);

    const resumed = await cli(['resume', prefix, ...S]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /resumed job .*: now (queued|rendering)/);
    job = await waitForJob(farm.server, submitted.id, ['completed', 'failed']);
    assert.equal(job.state, 'completed', job.error ?? '');
  });

  it('refuses what the farm refuses, with exit 1 and its message', async () => {
    const pause = await cli(['pause', job.id, ...S]);
    assert.equal(pause.code, 1);
    assert.match(pause.stderr, /a completed job cannot be paused/);
    const unknown = await cli(['resume', '0123456789abcdef', ...S]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no job with id 0123456789abcdef/);
    const noMatch = await cli(['job', 'zzzzzz', ...S]);
    assert.equal(noMatch.code, 1);
    assert.match(noMatch.stderr, /no job with id or name "zzzzzz"/);
  });

  it('job, jobs --state and log, as text and JSON', async () => {
    const [detailRun, listRun, textRun, logRun] = await Promise.all([
      cli(['job', job.id, '--json', ...S]),
      cli(['jobs', '--state', 'completed', '--json', ...S]),
      cli(['job', job.id.slice(0, 8), ...S]),
      cli(['log', job.id, '2', '--json', ...S]),
    ]);
    const detail = json<JobDetail>(detailRun);
    assert.deepEqual(detail.frameList.map((f) => f.state), ['done', 'done']);
    assert.deepEqual(json<Job[]>(listRun).map((j) => j.id), [job.id]);
    assert.equal(textRun.code, 0, textRun.stderr);
    assert.match(textRun.stdout, /shot 010 \(.*\): completed\nframes: 2 done/);
    assert.match(json<{ log: string }>(logRun).log, /Fra:2 /);
    assert.equal((await cli(['jobs', '--state', 'bogus', ...S])).code, 2);
  });

  it('download: the video, the frames and the zip, with --json; one kind at a time', async () => {
    const out = join(dir, 'out');
    const [video, frames, zip] = await Promise.all([
      cli(['download', job.id, '-o', out, '--json', ...S]),
      cli(['download', job.id.slice(0, 6), '--frames', '-o', join(out, 'frames'), '--json', ...S]),
      cli(['download', job.id, '--zip', '-o', out, ...S]),
    ]);
    const v = json<{ files: Array<{ path: string; bytes: number }>; bytes: number }>(video);
    assert.equal(v.files[0]!.path, join(out, `${job.id}.mp4`));
    assert.equal(statSync(v.files[0]!.path).size, statSync(farm.server.dataDir.video(job.id)).size);
    assert.equal(readFileSync(v.files[0]!.path).subarray(4, 8).toString(), 'ftyp', 'an MP4');

    const f = json<{ files: Array<{ path: string; bytes: number }> }>(frames);
    assert.deepEqual(readdirSync(join(out, 'frames')).sort(), ['frame_0002.png', 'frame_0003.png']);
    for (const file of f.files) {
      const name = file.path.split('/').pop()!;
      assert.deepEqual(readFileSync(file.path), readFileSync(join(farm.server.dataDir.framesDir(job.id), name)), `${name} is the server's frame`);
    }

    assert.equal(zip.code, 0, zip.stderr);
    assert.match(zip.stdout, /saved .*-frames\.zip/);
    assert.equal(readFileSync(join(out, `${job.id}-frames.zip`)).subarray(0, 2).toString(), 'PK');
    assert.ok(!readdirSync(out).some((n) => n.endsWith('.partial')), 'no partial files left');

    const both = await cli(['download', job.id, '--frames', '--zip', ...S]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /choose one of --video, --frames and --zip/);
    const missing = await cli(['download', '0123456789abcdef', ...S]);
    assert.equal(missing.code, 1);
  });

  it('submit --wait exits 1 for a failed job; retry reads the scene again', async () => {
    const run = await cli(['submit', 'denoise.blend', '--wait', '--json', ...S], { cwd: dir });
    assert.equal(run.code, 1, run.stderr);
    const failed = JSON.parse(run.stdout) as Job;
    assert.equal(failed.state, 'failed');
    assert.match(failed.error ?? '', /OpenImageDenoise/);

    const retried = json<Job>(await cli(['retry', failed.id, '--json', ...S]));
    assert.equal(retried.state, 'probing', 'a job that failed its preflight is read again');
    assert.equal((await waitForJob(farm.server, failed.id, ['failed', 'completed'])).state, 'failed');
    const again = await cli(['retry', job.id, ...S]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /has no failed frames/);
  });

  it('worker-drain, worker-disable and worker-enable by name or id prefix', async () => {
    const [worker] = json<Worker[]>(await cli(['workers', '--json', ...S]));
    assert.equal(worker!.name, 'worker1');
    const drained = json<Worker>(await cli(['worker-drain', 'worker1', '--json', ...S]));
    assert.equal(drained.enabled, false);
    const disabled = await cli(['worker-disable', worker!.id.slice(0, 6), ...S]);
    assert.equal(disabled.code, 0, disabled.stderr);
    assert.match(disabled.stdout, /worker worker1 \(.*\): disabled/);
    const text = await cli(['workers', ...S]);
    assert.match(text.stdout, /worker1/);
    assert.equal(json<Worker>(await cli(['worker-enable', 'worker1', '--json', ...S])).enabled, true);
    const unknown = await cli(['worker-enable', 'no-such-worker', ...S]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no worker with id or name "no-such-worker"/);
  });

  it('delete asks first: no or no answer keeps the job, y or --yes deletes it', async () => {
    const held = json<Job>(await cli(['submit', 'scene.blend', '--hold', '--name', 'to delete', '--json', ...S], { cwd: dir }));
    await waitForJob(farm.server, held.id, ['paused']);

    const no = await cli(['delete', held.id, ...S], { input: 'n\n' });
    assert.equal(no.code, 1);
    assert.match(no.stderr, /Delete job .* "to delete" \(paused, 0 frames rendered\).*\[y\/N\]/s);
    assert.match(no.stderr, /not deleted/);
    const silent = await cli(['delete', held.id, ...S]);
    assert.equal(silent.code, 1, 'no answer (stdin closed) is a no');
    assert.equal((await farm.server.farm.getJob(held.id)).id, held.id, 'still there');

    const yes = await cli(['delete', held.id, ...S], { input: 'y\n' });
    assert.equal(yes.code, 0, yes.stderr);
    await assert.rejects(farm.server.farm.getJob(held.id), /no job with id/);

    const cancelMe = json<Job>(await cli(['submit', 'scene.blend', '--hold', '--json', ...S], { cwd: dir }));
    assert.equal(json<Job>(await cli(['cancel', cancelMe.id, '--json', ...S])).state, 'cancelled');
    assert.equal((await cli(['cancel', cancelMe.id, ...S])).code, 1, 'already cancelled');
    const scripted = await cli(['delete', cancelMe.id, '--yes', '--json', ...S]);
    assert.deepEqual(json(scripted), { id: cancelMe.id, deleted: true });
    assert.equal((await cli(['delete', cancelMe.id, '--yes', ...S])).code, 1, 'gone');
  });
});

describe('archenland command line: help, usage errors, where the server and token come from', () => {
  let farm: TestFarm;

  before(async () => {
    // No loopback trust: every call needs the token, so where it comes from shows.
    farm = await startTestFarm({ workers: 0, server: { trust_loopback: false } });
  });
  after(async () => farm?.close());

  it('every command has --help with examples (exit 0)', async () => {
    const commands = ['submit', 'jobs', 'job', 'log', 'cancel', 'pause', 'resume', 'retry', 'delete', 'priority', 'edit', 'workers', 'worker-enable', 'worker-drain', 'worker-disable', 'download', 'server', 'worker', 'start'];
    const runs = await Promise.all(commands.map((c) => cli([c, '--help'])));
    runs.forEach((run, i) => {
      assert.equal(run.code, 0, `${commands[i]}: ${run.stderr}`);
      assert.match(run.stdout, new RegExp(`Usage: archenland ${commands[i]}`));
      assert.match(run.stdout, /Examples:\n  \$ archenland /, commands[i]);
    });
    const top = await cli(['--help']);
    assert.match(top.stdout, /Exit codes:\n  0  success/);
  });

  it('exits 2 on usage errors and 3 when the server is unreachable', async () => {
    const [missingArg, unknownCommand, unknownOption, badNumber, badFlag, unreachable] = await Promise.all([
      cli(['pause']),
      cli(['render-everything']),
      cli(['jobs', '--colour']),
      cli(['log', 'abcdef', 'twelve', '--server', farm.server.httpUrl]),
      cli(['server', '--web-port', 'eighty']),
      cli(['download', 'abcdef', '--server', `http://127.0.0.1:${await freePort()}`]),
    ]);
    assert.equal(missingArg.code, 2);
    assert.match(missingArg.stderr, /missing required argument 'id'/);
    assert.equal(unknownCommand.code, 2);
    assert.equal(unknownOption.code, 2);
    assert.equal(badNumber.code, 2);
    assert.equal(badFlag.code, 2);
    assert.match(badFlag.stderr, /expected a whole number/);
    assert.equal(unreachable.code, 3);
    assert.match(unreachable.stderr, /cannot reach the server/);
  });

  it('settings.conf < environment < flags, for the server address and the token', async () => {
    const url = farm.server.httpUrl;
    const token = farm.server.tokens.user!;
    const wrong = 'w'.repeat(32);
    const here = mkdtempSync(join(tmpdir(), 'archenland-cli-conf-'));
    // A server's settings.conf with its data folder: the CLI takes the port and the token file from it.
    writeFileSync(join(here, 'settings.conf'), `web_port = ${farm.server.httpPort}\nbind = "127.0.0.1"\ndata_dir = "${farm.server.dataDir.root}"\n`);
    const elsewhere = mkdtempSync(join(tmpdir(), 'archenland-cli-none-'));
    const unreachable = `http://127.0.0.1:${await freePort()}`;

    const runs = await Promise.all([
      cli(['jobs', '--server', url], { cwd: elsewhere }), // no token anywhere
      cli(['jobs', '--json'], { cwd: here }), // all from settings.conf
      cli(['jobs', '--json', '--config', join(here, 'settings.conf')], { cwd: elsewhere }),
      cli(['jobs', '--json'], { cwd: here, env: { ARCHENLAND_TOKEN: wrong } }), // env beats the file
      cli(['jobs', '--json', '--token', token], { cwd: here, env: { ARCHENLAND_TOKEN: wrong } }), // flag beats env
      cli(['jobs', '--json'], { cwd: elsewhere, env: { ARCHENLAND_SERVER: url, ARCHENLAND_TOKEN: token } }),
      cli(['jobs', '--json'], { cwd: here, env: { ARCHENLAND_SERVER: unreachable } }), // env server beats the file
      cli(['jobs', '--json', '--server', url], { cwd: here, env: { ARCHENLAND_SERVER: unreachable } }), // flag beats env
      cli(['jobs', '--config', join(elsewhere, 'missing.conf')], { cwd: elsewhere }),
    ]);
    const codes = runs.map((r) => r.code);
    assert.deepEqual(codes, [1, 0, 0, 1, 0, 0, 3, 0, 2], runs.map((r) => r.stderr).join('\n'));
    assert.match(runs[0]!.stderr, /missing or wrong access token/);
    assert.match(runs[8]!.stderr, /missing\.conf: settings file not found/);
    assert.ok(existsSync(join(here, 'settings.conf')));
  });
});
