import { existsSync } from 'node:fs';
import { copyFile, link, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { text } from 'node:stream/consumers';
import { apiPath, projectManifestSchema, type BlendRef, type ProjectFile, type ProjectManifest, type ProjectRef } from '../protocol/index.ts';
import type { TlsClient } from '../util/tls-client.ts';
import type { BlendCache } from './blend-cache.ts';
import { touch } from './cache-budget.ts';
import { cachedFilePath } from './cache-paths.ts';
import type { FileFetcher } from './file-fetcher.ts';

/** Files fetched at once while laying out a project. */
const PARALLEL_DOWNLOADS = 4;

/** A project laid out on this worker: its folder tree and the job's .blend in it. */
export interface LaidOutProject {
  tree: string;
  blendFile: string;
}

/**
 * A job's project on this worker. Files are fetched by SHA-256 into one cache shared by
 * every job (a texture used by ten shots is fetched once), then laid out as the project's
 * folder tree with hard links (copies only across file systems), the job's .blend at its
 * place, so the .blend's "//" paths resolve as on the artist's machine.
 */
export class ProjectCache {
  /** Layouts under way, shared by a probe and a render asking at once; a finished one is found on disk. */
  private readonly layouts = new Map<string, Promise<LaidOutProject>>();

  constructor(
    private readonly cacheDir: string,
    private readonly serverUrl: string,
    private readonly token: string,
    private readonly transport: TlsClient,
    private readonly blends: BlendCache,
    private readonly fetcher: FileFetcher,
  ) {}

  /** Lays the project out (once per project and .blend) and returns where the .blend is. */
  prepare(project: ProjectRef, blend: BlendRef): Promise<LaidOutProject> {
    // The same files with another .blend (the scene edited, the textures not) is another tree.
    const key = `${project.id.slice(0, 16)}-${blend.sha256.slice(0, 16)}`;
    let layout = this.layouts.get(key);
    if (!layout) {
      layout = this.layOut(project, blend, path.join(this.cacheDir, 'projects', key)).finally(() => this.layouts.delete(key));
      this.layouts.set(key, layout);
    }
    return layout;
  }

  private async layOut(project: ProjectRef, blend: BlendRef, tree: string): Promise<LaidOutProject> {
    const done = path.join(tree, '.archenland-complete');
    const blendFile = inside(tree, project.main);
    // Laid out before and not trimmed since (trimming removes whole trees).
    if (existsSync(done)) return { tree, blendFile };
    const manifest = await this.manifest(project.id);
    const queue: Waiting[] = manifest.files.map((file) => ({ file, notBefore: 0, waitingSince: null }));
    // Waiting for peers counts from the last file that arrived: while peers keep delivering
    // others, a file's turn comes; only when nothing arrives for long does the server step in.
    const progress = { at: Date.now() };
    // Each lane takes the next file that may be fetched now; a file whose peers are busy
    // (or on their way to having it) goes to the back of the queue until it may be asked for again.
    const lane = async () => {
      for (;;) {
        const now = Date.now();
        const ready = queue.findIndex((waiting) => waiting.notBefore <= now);
        if (ready < 0) {
          if (queue.length === 0) return;
          await sleep(Math.min(...queue.map((waiting) => waiting.notBefore)) - now);
          continue;
        }
        const [waiting] = queue.splice(ready, 1) as [Waiting];
        const cached = await this.file(waiting, progress.at);
        if (!cached) {
          queue.push(waiting);
          continue;
        }
        progress.at = Date.now();
        await place(cached, inside(tree, waiting.file.path));
      }
    };
    await Promise.all(Array.from({ length: PARALLEL_DOWNLOADS }, lane));
    await place(await this.blends.get(blend), blendFile);
    await writeFile(done, '');
    return { tree, blendFile };
  }

  private async manifest(id: string): Promise<ProjectManifest> {
    const saved = path.join(this.cacheDir, 'manifests', `${id}.json`);
    if (existsSync(saved)) return projectManifestSchema.parse(JSON.parse(await readFile(saved, 'utf8')));
    const response = await this.transport.send(new URL(apiPath('getProject', { sha256: id }), this.serverUrl), {
      headers: { authorization: `Bearer ${this.token}` },
    });
    const body = await text(response);
    if (response.statusCode !== 200) throw new Error(`could not fetch the project ${id.slice(0, 12)}: HTTP ${response.statusCode} ${body}`);
    // Checked like any message: the paths decide where files land on this machine.
    const manifest = projectManifestSchema.parse(JSON.parse(body));
    await mkdir(path.dirname(saved), { recursive: true });
    await writeFile(saved, body);
    return manifest;
  }

  /**
   * The cached file with this content, fetched first if this worker lacks it; null when it
   * should be asked for again later (`waiting` then says when).
   */
  private async file(waiting: Waiting, lastArrival: number): Promise<string | null> {
    const { sha256 } = waiting.file;
    const target = cachedFilePath(this.cacheDir, sha256);
    if (existsSync(target)) {
      await touch(target);
      return target;
    }
    const waited = waiting.waitingSince === null ? 0 : Date.now() - Math.max(waiting.waitingSince, lastArrival);
    const result = await this.fetcher.fetchOnce(sha256, target, 'downloadProjectFile', 'the project file', waited);
    if (result.fetched) return target;
    waiting.waitingSince ??= Date.now();
    waiting.notBefore = Date.now() + result.waitMs;
    return null;
  }
}

/** A project file still to fetch, and when it may be asked for again. */
interface Waiting {
  file: ProjectFile;
  notBefore: number;
  waitingSince: number | null;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, ms)));

/** A project path inside the tree; the manifest's schema already refuses ".." and absolute paths. */
function inside(tree: string, projectPath: string): string {
  const full = path.resolve(tree, ...projectPath.split('/'));
  if (!full.startsWith(tree + path.sep)) throw new Error(`project path ${JSON.stringify(projectPath)} leaves the project's folder`);
  return full;
}

/** Puts a cached file at its place in a tree: a hard link, or a copy across file systems. */
async function place(cached: string, target: string): Promise<void> {
  if (existsSync(target)) return;
  await mkdir(path.dirname(target), { recursive: true });
  try {
    await link(cached, target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return;
    if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw error;
    await copyFile(cached, target);
  }
}
