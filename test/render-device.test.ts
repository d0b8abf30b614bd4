/**
 * GPUs (issue #15 item 5), on machines without one: the session receives the worker's
 * render device and applies it in Cycles' preferences (read back inside Blender), and a
 * device Blender does not see is a clear error, before the worker takes any work.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BlenderSession, checkRenderDevice, RenderDeviceError } from '../src/worker/blender/index.ts';
import { BLENDER, makeTestScene } from '../testkit/scenes.ts';

const BIN = fileURLToPath(new URL('../bin/archenland.js', import.meta.url));

describe('the render device (real Blender, no GPU here)', () => {
  it('a session on the CPU says so, read back from Blender', async () => {
    const scene = await makeTestScene({ frames: '1-1', width: 32, height: 24, samples: 1 });
    const session = await BlenderSession.start({ blenderPath: BLENDER, blendFile: scene, threads: 1, allowScripts: false, overrides: {}, device: { type: 'CPU', gpus: [] } });
    try {
      assert.deepEqual(session.usedDevice && { type: session.usedDevice.type, devices: session.usedDevice.devices }, { type: 'CPU', devices: ['CPU'] });
    } finally {
      await session.close();
    }
  });

  it('CUDA is set in the preferences, and Blender seeing no CUDA device is a clear error', async () => {
    const scene = await makeTestScene({ frames: '1-1', width: 32, height: 24, samples: 1 });
    await assert.rejects(
      BlenderSession.start({ blenderPath: BLENDER, blendFile: scene, threads: 1, allowScripts: false, overrides: {}, device: { type: 'CUDA', gpus: [] } }),
      /render device: render_device is CUDA, but Blender sees no CUDA device \(compute device type CUDA; devices it sees: CPU/,
    );
    await assert.rejects(checkRenderDevice(BLENDER, { type: 'CUDA', gpus: [1] }), (error: Error) => error instanceof RenderDeviceError && /no CUDA device/.test(error.message));
  });

  it('a backend this Blender was built without is named, with the ones it has', async () => {
    await assert.rejects(checkRenderDevice(BLENDER, { type: 'METAL', gpus: [] }), /built without METAL \(render_device\); its backends: CPU(, [A-Z]+)*$/);
  });

  it('archenland worker refuses to start on a device Blender cannot use, before connecting anywhere', async () => {
    const child = spawn(process.execPath, [BIN, 'worker', '--render-device', 'CUDA', '--gpus', '1', '--address', '127.0.0.1', '--port', '9', '--web-port', '9'], {
      env: { ...process.env, ARCHENLAND_TOKEN: 'a'.repeat(32), ARCHENLAND_BLENDER_PATH: BLENDER, ARCHENLAND_LOG_LEVEL: 'silent' },
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 2, stderr);
    assert.match(stderr, /render_device CUDA \(gpus 1\): render_device is CUDA, but Blender sees no CUDA device/);
  });
});
