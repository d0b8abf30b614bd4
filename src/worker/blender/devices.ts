import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { RenderDevice, UsedDevice } from '../../protocol/index.ts';

const CHECK_SCRIPT = fileURLToPath(new URL('../../../blender/check_device.py', import.meta.url));

/** This worker's settings ask for a device Blender cannot render on: it must not take work. */
export class RenderDeviceError extends Error {}

/**
 * Asks Blender (no scene, factory settings) whether it can render on `device`, before the
 * worker takes any work: a GPU backend Blender was built without, or sees no device of, or
 * a GPU index it does not have, is a clear error naming what Blender does see.
 */
export async function checkRenderDevice(blenderPath: string, device: RenderDevice): Promise<UsedDevice> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'archenland-device-'));
  const output = path.join(dir, 'device.json');
  try {
    await promisify(execFile)(blenderPath, ['-b', '--factory-startup', '--python', CHECK_SCRIPT, '--', '--device', JSON.stringify(device), '--output', output], {
      timeout: 120_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    const answer = JSON.parse(await readFile(output, 'utf8')) as { ok: true; device: UsedDevice } | { ok: false; error: string };
    if (!answer.ok) throw new RenderDeviceError(answer.error);
    return answer.device;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
