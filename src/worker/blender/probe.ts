import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { sceneInfoSchema, type SceneInfo } from '../../protocol/scene.ts';
import type { ProjectLayout } from './session.ts';
import { silentLogger, type Logger } from '../../util/log.ts';
import { lowerPriority } from './priority.ts';
import { EVENT_FD, EVENT_NONCE_VARIABLE, findBlenderError, newEventNonce, parseJson } from './progress.ts';

export type ProbeOptions = {
  blenderPath: string;
  blendFile: string;
  /** Run Python embedded in the .blend (-y) instead of refusing it (-Y). */
  allowScripts: boolean;
  /** The job's project laid out on this worker (see session.ts). */
  project?: ProjectLayout | null;
  timeoutMs?: number;
  /** CPU niceness of the probing Blender, as for rendering (priority.ts); 0 or absent leaves it. */
  nice?: number;
  logger?: Logger;
};

const PROBE_SCRIPT = fileURLToPath(new URL('../../../blender/probe.py', import.meta.url));
const DEFAULT_TIMEOUT_MS = 60_000;
const TAIL_LINES = 20;

/**
 * The scene information in one line of the event pipe, `{"nonce": …, "event": "probe", …}`,
 * checked against the protocol's schema (what the server stores); null for any other
 * line or another nonce. Throws when the line is our probe but does not match,
 * naming the bad fields.
 */
export function parseProbeLine(line: string, nonce: string): SceneInfo | null {
  const json = parseJson(line);
  if (typeof json !== 'object' || json === null) return null;
  const { nonce: lineNonce, event, ...fields } = json as Record<string, unknown>;
  if (lineNonce !== nonce || event !== 'probe') return null;
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
  if (opts.project) args.push('--', '--project', JSON.stringify(opts.project));
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;

  return new Promise<SceneInfo>((resolve, reject) => {
    const nonce = newEventNonce();
    // The answer comes on its own pipe (EVENT_FD): stdout carries text the scene controls.
    const child = spawn(opts.blenderPath, args, {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
      env: { ...process.env, [EVENT_NONCE_VARIABLE]: nonce },
    });
    lowerPriority(child.pid, opts.nice ?? 0, opts.logger ?? silentLogger);
    let info: SceneInfo | null = null;
    let invalid: Error | null = null;
    let timedOut = false;
    let spawnError: Error | null = null;

    const readAnswer = (text: string) => {
      for (const line of text.split('\n')) {
        try {
          info = parseProbeLine(line, nonce) ?? info;
        } catch (error) {
          invalid = error as Error;
        }
      }
    };
    // Output is small; buffer it whole and split once so no line is cut in two.
    let stdout = '';
    let stderr = '';
    let answer = '';
    child.stdout!.setEncoding('utf8').on('data', (data: string) => (stdout += data));
    child.stderr!.setEncoding('utf8').on('data', (data: string) => (stderr += data));
    (child.stdio[EVENT_FD] as Readable).setEncoding('utf8').on('data', (data: string) => (answer += data));

    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);

    child.on('error', (error) => (spawnError = error));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      readAnswer(answer);
      const lines = `${stdout}\n${stderr}`.split('\n').filter((line) => line.trim() !== '');
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
