import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { findBlenderError, parseSessionEvent } from './progress.ts';
import { type SceneInfo } from './scene-info.ts';

export type ProbeOptions = {
  blenderPath: string;
  blendFile: string;
  /** Run Python embedded in the .blend (-y) instead of refusing it (-Y). */
  allowScripts: boolean;
  timeoutMs?: number;
};

const PROBE_SCRIPT = fileURLToPath(new URL('../../../blender/probe.py', import.meta.url));
const DEFAULT_TIMEOUT_MS = 60_000;
const TAIL_LINES = 20;

/** Read a scene's frame range, resolution, engine and so on without rendering (~2 s). */
export function probeScene(opts: ProbeOptions): Promise<SceneInfo> {
  const args = ['-b', opts.blendFile, opts.allowScripts ? '-y' : '-Y', '--python', PROBE_SCRIPT];
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;

  return new Promise<SceneInfo>((resolve, reject) => {
    const child = spawn(opts.blenderPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    let info: SceneInfo | null = null;
    let timedOut = false;
    let spawnError: Error | null = null;

    const collect = (chunk: string) => {
      for (const line of chunk.split('\n')) {
        const event = parseSessionEvent(line);
        if (event?.event === 'probe') {
          const { event: _event, ...sceneInfo } = event;
          info = sceneInfo;
        } else if (line.trim() !== '') {
          lines.push(line);
        }
      }
    };
    // Output is small; buffer it whole and split once so no line is cut in two.
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (data: string) => (stdout += data));
    child.stderr.setEncoding('utf8').on('data', (data: string) => (stderr += data));

    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);

    child.on('error', (error) => (spawnError = error));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      collect(stdout);
      collect(stderr);
      // The probe line is the answer; Blender's exit code after it does not matter.
      if (info) {
        resolve(info);
        return;
      }
      const exit = signal ? `signal ${signal}` : `exit code ${code}`;
      const reason = spawnError
        ? `could not run ${opts.blenderPath}: ${(spawnError as Error).message}`
        : timedOut
          ? `timed out after ${timeoutMs} ms`
          : `${findBlenderError(lines) ?? 'Blender printed no scene information'} (${exit})`;
      const tail = lines.slice(-TAIL_LINES).join('\n');
      reject(new Error(`Could not read scene ${opts.blendFile}: ${reason}\n--- Blender output ---\n${tail}`));
    });
  });
}
