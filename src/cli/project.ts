import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { apiPath, type ProjectCreated, type ProjectManifest } from '../protocol/index.ts';
import type { ApiClient } from './client.ts';
import { sha256OfFile } from '../util/hash.ts';
import { mb, progressBar } from './common.ts';
import { uploadProjectFile } from './upload.ts';

const LIST_DEPENDENCIES = fileURLToPath(new URL('../../blender/list_dependencies.py', import.meta.url));

/** A project file on this machine: where it is, and what the manifest says of it. */
export interface LocalFile {
  local: string;
  path: string;
  sha256: string;
  size: number;
}

export interface LocalProject {
  manifest: ProjectManifest;
  files: LocalFile[];
  /** Files the .blend names that are not on this machine (the farm's preflight reports them too). */
  missing: string[];
  /** How the files were found. */
  foundBy: 'blender' | 'folder';
}

/**
 * The files a .blend uses, found by asking Blender (blender/list_dependencies.py: images,
 * sequences, UDIM tiles, libraries, caches…), or everything in `projectDir` when given.
 * null when the .blend uses no other file.
 */
export async function findProject(blendFile: string, opts: { projectDir?: string; blenderPath: string }): Promise<LocalProject | null> {
  const blend = path.resolve(blendFile);
  let found: string[];
  let missing: string[] = [];
  let root: string;
  if (opts.projectDir) {
    root = path.resolve(opts.projectDir);
    if (!isInside(root, blend)) throw new Error(`${blendFile} is not inside the project folder ${opts.projectDir}`);
    found = (await filesUnder(root)).filter((file) => file !== blend && !/\.blend\d+$/.test(file));
  } else {
    const listed = await askBlender(blend, opts.blenderPath);
    found = listed.files.filter((file) => file !== blend);
    missing = listed.missing;
    if (found.length === 0) return missing.length > 0 ? { manifest: { root: path.dirname(blend), main: path.basename(blend), files: [] }, files: [], missing, foundBy: 'blender' } : null;
    root = commonFolder([path.dirname(blend), ...found.map((file) => path.dirname(file))]);
  }
  const files: LocalFile[] = [];
  for (const local of found) {
    const { size } = await stat(local);
    files.push({ local, path: projectPath(root, local), sha256: await sha256OfFile(local), size });
  }
  const manifest: ProjectManifest = { root, main: projectPath(root, blend), files: files.map(({ path: p, sha256, size }) => ({ path: p, sha256, size })) };
  return { manifest, files, missing, foundBy: opts.projectDir ? 'folder' : 'blender' };
}

/** Runs list_dependencies.py in Blender (scripts off, factory settings) and reads its answer. */
async function askBlender(blend: string, blenderPath: string): Promise<{ files: string[]; missing: string[] }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'archenland-deps-'));
  const output = path.join(dir, 'dependencies.json');
  try {
    await promisify(execFile)(blenderPath, ['-b', '--factory-startup', blend, '-Y', '--python', LIST_DEPENDENCIES, '--', '--output', output], {
      timeout: 300_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    const answer = JSON.parse(await readFile(output, 'utf8')) as { files: Array<{ path: string }>; missing: Array<{ ref?: string; path: string }> };
    return { files: [...new Set(answer.files.map((f) => f.path))], missing: answer.missing.map((m) => m.ref ?? m.path) };
  } catch (error) {
    const err = error as Error & { code?: string; stdout?: string; stderr?: string };
    if (err.code === 'ENOENT') throw new BlenderNotFound(blenderPath);
    const said = `${err.stdout ?? ''}\n${err.stderr ?? ''}`.split('\n').filter((line) => /error/i.test(line));
    throw new Error(`Blender could not list the files ${path.basename(blend)} uses: ${said.slice(-2).join(' ').trim() || err.message.split('\n')[0]}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** No Blender here to ask: the caller sends the .blend alone, or the user names the project folder. */
export class BlenderNotFound extends Error {
  constructor(blenderPath: string) {
    super(`Blender is not installed here (no "${blenderPath}"), so the files the .blend uses cannot be found; pass --project-dir DIR to send a folder, or --blender-path`);
  }
}

/** The deepest folder holding every given folder. */
export function commonFolder(folders: string[]): string {
  const split = folders.map((folder) => path.resolve(folder).split(path.sep));
  const first = split[0]!;
  let depth = 0;
  while (depth < first.length && split.every((parts) => parts[depth] === first[depth])) depth++;
  return first.slice(0, depth).join(path.sep) || path.sep;
}

/** A file's path in the project: relative to its root, with "/" between folders. */
function projectPath(root: string, file: string): string {
  return path.relative(root, file).split(path.sep).join('/');
}

function isInside(root: string, file: string): boolean {
  const relative = path.relative(root, file);
  return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative);
}

/** Every regular file under a folder, skipping hidden folders (.git and the like). */
async function filesUnder(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath, entry.name))
    .filter((file) => !path.relative(root, file).split(path.sep).some((part) => part.startsWith('.')));
}

/** What sending a project cost: files listed, bytes uploaded, bytes the server already had. */
export interface SentProject {
  projectId?: string;
  files: number;
  uploadedBytes: number;
  reusedBytes: number;
}

/**
 * Finds the files the .blend uses, tells the server the project, and uploads only the
 * files it lacks (with a progress bar): a re-submission after one texture changed sends
 * that texture alone.
 */
export async function sendProject(
  client: ApiClient,
  blendFile: string,
  options: { projectDir?: string; blendOnly?: boolean; blenderPath?: string },
): Promise<SentProject> {
  const nothing: SentProject = { files: 0, uploadedBytes: 0, reusedBytes: 0 };
  if (options.blendOnly) return nothing;
  let project: LocalProject | null;
  try {
    project = await findProject(blendFile, { projectDir: options.projectDir, blenderPath: options.blenderPath ?? process.env.ARCHENLAND_BLENDER ?? 'blender' });
  } catch (error) {
    if (options.projectDir) throw error;
    // The farm reads the .blend itself and says what is wrong with it (not a .blend, say).
    console.error(`warning: ${(error as Error).message}; sending the .blend alone`);
    return nothing;
  }
  if (project && project.missing.length > 0) {
    const shown = project.missing.slice(0, 5).join(', ');
    console.error(`warning: the .blend uses ${project.missing.length} file(s) that are not on this machine: ${shown}${project.missing.length > 5 ? ', …' : ''}`);
  }
  if (!project || project.files.length === 0) return nothing;
  const created = await client.post<ProjectCreated>(apiPath('createProject'), project.manifest);
  const lacking = new Set(created.missing);
  const bar = progressBar('files    {bar} {percentage}% | {value_mb}/{total_mb} MB');
  try {
    let sent = 0;
    if (created.missingBytes > 0) bar.start(created.missingBytes, 0, { value_mb: '0.0', total_mb: mb(created.missingBytes) });
    for (const file of project.files) {
      if (!lacking.delete(file.sha256)) continue; // already there, or listed twice under two paths
      await uploadProjectFile(client, file, (bytes) => bar.update((sent += bytes), { value_mb: mb(sent), total_mb: mb(created.missingBytes) }));
    }
  } finally {
    bar.stop();
  }
  return { projectId: created.id, files: project.files.length, uploadedBytes: created.missingBytes, reusedBytes: created.totalBytes - created.missingBytes };
}
