import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { ProjectCreated, ProjectManifest, ProjectRef } from '../protocol/index.ts';
import { commitFile, discardFile, type ProjectRow, type ReceivedFile } from '../store/index.ts';
import { FarmError } from './errors.ts';
import type { FarmState } from './state.ts';
import { now } from './state.ts';

/** Projects and files younger than this are kept even when no job uses them: their job may be on its way. */
const GRACE_MS = 24 * 60 * 60 * 1000;

/**
 * The files jobs' .blends use, stored once each by content: a client says what a project
 * holds (path, size, hash), the farm answers which files it lacks, and only those are
 * uploaded. Files no job's project uses any more are collected.
 */
export class Projects {
  constructor(private readonly state: FarmState) {}

  /** Records a manifest under its hash and tells which of its files must still be uploaded. */
  async create(manifest: ProjectManifest): Promise<ProjectCreated> {
    const id = projectId(manifest);
    await this.state.store.projects.put(id, manifest, now());
    const missing = new Map<string, number>();
    for (const file of manifest.files) {
      if (!missing.has(file.sha256) && !existsSync(this.state.dataDir.projectFile(file.sha256))) missing.set(file.sha256, file.size);
    }
    const sum = (sizes: Iterable<number>) => [...sizes].reduce((total, size) => total + size, 0);
    return { id, missing: [...missing.keys()], totalBytes: sum(manifest.files.map((f) => f.size)), missingBytes: sum(missing.values()) };
  }

  /** Keeps an uploaded file under its hash, once its content proved to have that hash. */
  async storeFile(sha256: string, upload: ReceivedFile): Promise<void> {
    if (upload.sha256 !== sha256) {
      await discardFile(upload.tempPath);
      throw new FarmError('CORRUPT_UPLOAD', `checksum mismatch: the upload has SHA-256 ${upload.sha256}, not ${sha256}`);
    }
    await commitFile(upload.tempPath, this.state.dataDir.projectFile(sha256));
  }

  /** A project every file of which is on the server: only then may a job use it. */
  async requireComplete(id: string): Promise<ProjectRow> {
    const project = await this.state.store.projects.get(id);
    if (!project) throw new FarmError('PROJECT_NOT_FOUND', `no project with id ${id}: create it first (POST /api/projects)`);
    const lacking = project.files.filter((file) => !existsSync(this.state.dataDir.projectFile(file.sha256)));
    if (lacking.length > 0) {
      const named = lacking.slice(0, 5).map((file) => file.path).join(', ');
      throw new FarmError('PROJECT_INCOMPLETE', `${lacking.length} of the project's files are not uploaded yet: ${named}${lacking.length > 5 ? ', …' : ''}`);
    }
    return project;
  }

  async get(id: string): Promise<ProjectRow> {
    const project = await this.state.store.projects.get(id);
    if (!project) throw new FarmError('PROJECT_NOT_FOUND', `no project with id ${id}`);
    return project;
  }

  /** The stored file with this hash, for workers. */
  file(sha256: string): string {
    const file = this.state.dataDir.projectFile(sha256);
    if (!existsSync(file)) throw new FarmError('FILE_NOT_FOUND', `no file with SHA-256 ${sha256}`);
    return file;
  }

  /** Removes projects no job uses and files no project uses (past a grace period). */
  async collectGarbage(): Promise<{ files: number; bytes: number }> {
    const cutoff = Date.now() - GRACE_MS;
    const used = await this.state.store.projects.collect(new Date(cutoff).toISOString());
    const root = this.state.dataDir.projectFilesDir;
    let files = 0;
    let bytes = 0;
    for (const name of await readdir(root, { recursive: true }).catch(() => [] as string[])) {
      const file = path.join(root, name);
      const sha256 = path.basename(name);
      if (used.has(sha256)) continue;
      const info = await stat(file).catch(() => null);
      if (!info?.isFile() || info.mtimeMs > cutoff) continue;
      await rm(file, { force: true });
      files++;
      bytes += info.size;
    }
    if (files > 0) this.state.log.info({ files, bytes }, 'project files no job uses were removed');
    return { files, bytes };
  }
}

/** What workers are told of a job's project: they fetch its manifest once by id. */
export async function projectRefOf(state: FarmState, projectId: string | null): Promise<ProjectRef | null> {
  if (!projectId) return null;
  const project = await state.store.projects.get(projectId);
  return project ? { id: project.id, root: project.root, main: project.main } : null;
}

/** A manifest's id: the hash of its content, files in path order, so the same project is one id. */
export function projectId(manifest: ProjectManifest): string {
  const files = [...manifest.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return createHash('sha256').update(JSON.stringify({ root: manifest.root, main: manifest.main, files })).digest('hex');
}
