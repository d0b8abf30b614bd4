import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { sceneInfoSchema, type SceneInfo } from '../../protocol/scene.ts';
import { findBlenderError, SESSION_EVENT_PREFIX } from './progress.ts';

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

/**
 * The scene information in one "@@ARCHENLAND {"event": "probe", …}" line, checked
 * against the protocol's schema (what the server stores); null for any other line.
 * Throws when the line is a probe but does not match, naming the bad fields.
 */
export function parseProbeLine(line: string): SceneInfo | null {
  if (!line.startsWith(SESSION_EVENT_PREFIX)) return null;
  let json: unknown;
  try {
    json = JSON.parse(line.slice(SESSION_EVENT_PREFIX.length));
  } catch {
    return null; // not ours after all, or cut short: the caller reports "no scene information"
  }
  if (typeof json !== 'object' || json === null || (json as { event?: unknown }).event !== 'probe') return null;
  const { event: _event, ...fields } = json as Record<string, unknown>;
  const parsed = sceneInfoSchema.safeParse(fields);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(line)'}: ${issue.message}`);
    throw new Error(`blender/probe.py reported invalid scene information (${problems.join('; ')})`);
  }
  return parsed.data;
}

/** Read a scene's frame range, resolution, engine and so on without rendering (~2 s). */
export function probeScene(opts: ProbeOptions): Promise<SceneInfo> {
  const args = ['-b', opts.blendFile, opts.allowScripts ? '-y' : '-Y', '--python', PROBE_SCRIPT];
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;

  return new Promise<SceneInfo>((resolve, reject) => {
    const child = spawn(opts.blenderPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    let info: SceneInfo | null = null;
    let invalid: Error | null = null;
    let timedOut = false;
    let spawnError: Error | null = null;

    const collect = (chunk: string) => {
      for (const line of chunk.split('\n')) {
        let parsed: SceneInfo | null = null;
        try {
          parsed = parseProbeLine(line);
        } catch (error) {
          invalid = error as Error;
        }
        if (parsed) info = parsed;
        else if (line.trim() !== '') lines.push(line);
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
          : invalid
            ? (invalid as Error).message
            : `${findBlenderError(lines) ?? 'Blender printed no scene information'} (${exit})`;
      const tail = lines.slice(-TAIL_LINES).join('\n');
      reject(new Error(`Could not read scene ${opts.blendFile}: ${reason}\n--- Blender output ---\n${tail}`));
    });
  });
}
