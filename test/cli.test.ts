import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { makeTestScene } from '../testkit/scenes.ts';
import { freePort, freePorts } from './helpers/processes.ts';

const BIN = fileURLToPath(new URL('../bin/archenland.js', import.meta.url));

function cli(args: string[], cwd: string, env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}


async function waitForOutput(child: ChildProcess, pattern: RegExp, timeoutMs = 30_000): Promise<void> {
  let seen = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${pattern} in output: ${seen}`)), timeoutMs);
    let errors = '';
    child.stderr!.on('data', (d) => (errors += d));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with code ${code} before ${pattern} in output: ${seen}${errors.slice(-2000)}`));
    });
    child.stdout!.on('data', (d) => {
      seen += d;
      if (pattern.test(seen)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

describe('the archenland command', () => {
  let dir: string;
  let farm: ChildProcess;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'archenland-cli-'));
    const [port, webPort] = await freePorts(2);
    // One settings file for the whole machine: the server's keys and the local worker's.
    writeFileSync(join(dir, 'settings.conf'), `port = ${port}\nweb_port = ${webPort}\nbind = "127.0.0.1"\nthreads = 1\nname = "desk"\n`);
    copyFileSync(await makeTestScene({ frames: '1-3', width: 32, height: 24, samples: 2 }), join(dir, 'scene.blend'));
    farm = spawn(process.execPath, [BIN, 'start'], { cwd: dir, env: { ...process.env, ARCHENLAND_LOG_LEVEL: 'warn' } });
    await waitForOutput(farm, /Archenland is running/);
  });

  after(() => {
    farm?.kill('SIGTERM');
  });

  it('submits from the server folder without a token and waits for the finished job', async () => {
    const result = await cli(['submit', 'scene.blend', '--frames', '2-3', '--wait', '--json'], dir);
    assert.equal(result.code, 0, result.stderr);
    const job = JSON.parse(result.stdout);
    assert.equal(job.state, 'completed');
    assert.deepEqual(job.counts, { total: 2, queued: 0, rendering: 0, done: 2, failed: 0 });
  });

  it('lists jobs and workers, as text and as JSON', async () => {
    const jobs = await cli(['jobs'], dir);
    assert.equal(jobs.code, 0, jobs.stderr);
    assert.match(jobs.stdout, /scene\s+completed\s+2\/2/);
    const workers = JSON.parse((await cli(['workers', '--json'], dir)).stdout);
    assert.equal(workers.length, 1);
    assert.equal(workers[0].framesRendered, 2);
    assert.equal(workers[0].name, 'desk', "the local worker's name comes from settings.conf");
    assert.equal(workers[0].threads, 1, "and so do its threads");
  });

  it('a scene that cannot render fails its job at once: submit --wait exits non-zero with the reason', async () => {
    // Cycles denoising on: Debian's Blender has no OpenImageDenoise, so every frame would fail.
    copyFileSync(await makeTestScene({ frames: '1-6', width: 32, height: 24, samples: 2, denoise: true }), join(dir, 'denoised.blend'));
    const started = Date.now();
    const result = await cli(['submit', 'denoised.blend', '--wait'], dir);
    assert.notEqual(result.code, 0, 'a failed job is not a success');
    assert.match(result.stdout, /failed/, result.stdout + result.stderr);
    assert.match(result.stdout, /OpenImageDenoise.*--no-denoising/, 'the reason, and the option that fixes it');
    assert.ok(Date.now() - started < 90_000, `it took ${Date.now() - started} ms`);
  });

  it('exits non-zero with the server\'s message for a rejected file', async () => {
    writeFileSync(join(dir, 'notes.txt'), 'hello');
    const result = await cli(['submit', 'notes.txt'], dir);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /"notes.txt" is not a Blender file/);
  });

  it('exits 2 on usage errors: a missing file, a bad frame range, a bad settings file', async () => {
    assert.equal((await cli(['submit', 'missing.blend'], dir)).code, 2);
    const range = await cli(['submit', 'scene.blend', '--frames', '9-1'], dir);
    assert.equal(range.code, 2);
    assert.match(range.stderr, /ends before it starts/);
    const other = mkdtempSync(join(tmpdir(), 'archenland-cli-bad-'));
    writeFileSync(join(other, 'settings.conf'), 'port = 7411\nweb_prot = 8080\n');
    const bad = await cli(['server'], other);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /settings\.conf:2: unknown key "web_prot"/);
  });

  it('exits 3 when the server cannot be reached', async () => {
    const result = await cli(['jobs', '--server', `http://127.0.0.1:${await freePort()}`], dir);
    assert.equal(result.code, 3);
    assert.match(result.stderr, /cannot reach the server/);
  });

  it('a worker with a wrong token stops with a clear message', async () => {
    const settings = (await import('node:fs')).readFileSync(join(dir, 'settings.conf'), 'utf8');
    const [, port] = /^port = (\d+)/m.exec(settings)!;
    const [, webPort] = /^web_port = (\d+)/m.exec(settings)!;
    const other = mkdtempSync(join(tmpdir(), 'archenland-cli-worker-'));
    const result = await cli(['worker', '--port', port!, '--web-port', webPort!, '--token', 'not-the-farm-token-at-all'], other);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /wrong worker token/);
  });
});
