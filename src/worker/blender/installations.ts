import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ConfigError } from '../../config/index.ts';
import { compareVersions, pickInstalled, versionMatches } from '../../protocol/index.ts';

/** One Blender on this machine: where it is, and the version it reports. */
export interface BlenderInstallation {
  path: string;
  version: string;
}

/**
 * The Blender installations a worker renders with, from `blender_path` (one path or a
 * list, the first the default) and the `[blenders]` table (version -> path). Each is run
 * once with --version: the farm goes by what Blender says it is, and a table entry whose
 * Blender says otherwise is a mistake in settings.conf, refused at start.
 */
export async function findInstallations(blenderPath: string | string[], table: Record<string, string> = {}): Promise<BlenderInstallation[]> {
  const paths = [...(Array.isArray(blenderPath) ? blenderPath : [blenderPath])];
  const listed = await Promise.all(paths.map(async (path) => ({ path, version: await readBlenderVersion(path) })));
  const tabled = await Promise.all(
    Object.entries(table).map(async ([label, path]) => {
      const version = await readBlenderVersion(path);
      if (!versionMatches(version, label)) throw new ConfigError(`[blenders] "${label}" = "${path}": that Blender says it is ${version}`);
      return { path, version };
    }),
  );
  const seen = new Set<string>();
  return [...listed, ...tabled].filter((one) => !seen.has(one.path) && seen.add(one.path));
}

/** The first of blender_path's installations: the one pre-warmed, and the one a job naming no version gets. */
export function defaultBlenderPath(blenderPath: string | string[]): string {
  return Array.isArray(blenderPath) ? blenderPath[0]! : blenderPath;
}

/**
 * The installation to render or probe with: the newest of the wanted release, or the
 * default (first) when the job names none. Undefined: this worker lacks it.
 */
export function installationFor(installations: readonly BlenderInstallation[], wanted: string | null): BlenderInstallation | undefined {
  return wanted === null ? installations[0] : pickInstalled(installations, wanted);
}

/** Versions as the worker reports them, the default first, the others newest first. */
export function reportedVersions(installations: readonly BlenderInstallation[]): string[] {
  const [first, ...rest] = installations;
  return first ? [first.version, ...rest.map((one) => one.version).sort((a, b) => compareVersions(b, a))] : [];
}

export async function readBlenderVersion(blenderPath: string): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)(blenderPath, ['--version'], { timeout: 30_000 });
    return /Blender\s+([\d.]+)/.exec(stdout)?.[1] ?? stdout.split('\n')[0]!.trim();
  } catch (error) {
    throw new Error(`cannot run Blender at "${blenderPath}" (set blender_path in settings.conf): ${(error as Error).message}`);
  }
}
