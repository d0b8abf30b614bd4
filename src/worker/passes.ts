import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { MAX_PASSES_PER_FRAME, passNameSchema } from '../protocol/index.ts';

/** The folder inside a frame's output folder where blender/farm_session/file_outputs.py puts File Output passes. */
export const PASSES_FOLDER = 'passes';

/** frame-0001, frame--0003: a frame's own output folder on the worker. */
export function frameFolder(frame: number): string {
  return `frame-${frame < 0 ? '-' : ''}${String(Math.abs(frame)).padStart(4, '0')}`;
}

/**
 * The files File Output nodes wrote for one frame, named by their path in the passes
 * folder. Names come from the .blend (node and slot names): each part is reduced to the
 * characters the server accepts, so a pass is never refused for its name.
 */
export async function collectPasses(dir: string): Promise<Array<{ name: string; file: string }>> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  const passes: Array<{ name: string; file: string }> = [];
  const taken = new Set<string>();
  for (const entry of entries) {
    if (!entry.isFile()) continue; // symlinks and the like are not passes
    const file = path.join(entry.parentPath, entry.name);
    const name = uniqueName(safePassName(path.relative(dir, file)), taken);
    if (!passNameSchema.safeParse(name).success) continue;
    passes.push({ name, file });
    if (passes.length === MAX_PASSES_PER_FRAME) break;
  }
  return passes.sort((a, b) => a.name.localeCompare(b.name));
}

function safePassName(relative: string): string {
  return relative
    .split(path.sep)
    .map((part) => part.replace(/[^A-Za-z0-9 ._-]/g, '_').replace(/^\./, '_').slice(0, 80))
    .join('/');
}

function uniqueName(name: string, taken: Set<string>): string {
  let candidate = name;
  for (let n = 2; taken.has(candidate.toLowerCase()); n++) candidate = `${name}-${n}`;
  taken.add(candidate.toLowerCase());
  return candidate;
}
