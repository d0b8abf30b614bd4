import { z } from 'zod';

/**
 * Blender versions as the farm compares them: "4.2" names every 4.2.x, "4.2.1" one
 * release. Workers report each installation's full version ("3.4.1"); a job asks for
 * one (`--blender 4.2`) or gets the closest one the farm has that is not older than the
 * Blender that saved its file. Pure functions, shared by the server, workers and the UI.
 */

/** A version a job may ask for: major.minor, or major.minor.patch. */
export const blenderVersionSchema = z
  .string()
  .trim()
  .regex(/^\d{1,3}\.\d{1,3}(\.\d{1,3})?$/, 'a Blender version like "4.2" or "4.2.1"');

/** A version as an installation reports it ("3.4.1"); kept loose since builds add suffixes. */
export const installedVersionSchema = z.string().min(1).max(100);

function parts(version: string): number[] {
  return (/^\d+(\.\d+)*/.exec(version.trim())?.[0] ?? '').split('.').filter(Boolean).map(Number);
}

/** Negative, zero or positive as `a` is older than, the same as or newer than `b`, over the parts both name. */
export function compareVersions(a: string, b: string): number {
  const [left, right] = [parts(a), parts(b)];
  for (let i = 0; i < Math.min(left.length, right.length); i++) {
    if (left[i] !== right[i]) return left[i]! - right[i]!;
  }
  return 0;
}

/** "4.2.1" is a "4.2" and a "4.2.1", not a "4.3" or "4.2.0". */
export function versionMatches(installed: string, wanted: string): boolean {
  const [have, want] = [parts(installed), parts(wanted)];
  return have.length >= want.length && want.every((part, i) => have[i] === part);
}

/** Answers by installed list and wanted version: asked per job publish and per dispatch, for thousands of workers. */
const answered = new WeakMap<readonly string[], Map<string, boolean>>();

/**
 * Whether any of a worker's installed versions is the wanted one. Remembered per list:
 * a worker's list is made once when it connects and never changed.
 */
export function hasBlender(installed: readonly string[], wanted: string): boolean {
  let known = answered.get(installed);
  if (!known) answered.set(installed, (known = new Map()));
  let answer = known.get(wanted);
  if (answer === undefined) known.set(wanted, (answer = installed.some((version) => versionMatches(version, wanted))));
  return answer;
}

/** major.minor of a version: what the farm keeps a job to, so every frame renders alike. */
export function releaseOf(version: string): string {
  return parts(version).slice(0, 2).join('.');
}

export interface BlenderChoice {
  /** The release the job renders with (major.minor), or the version it asked for. */
  version: string;
  /** The file was saved by a newer Blender than any the farm has: it renders with the newest anyway. */
  olderThanFile: boolean;
}

/**
 * Which Blender renders a job. Asked for: that one, whether or not a worker has it yet
 * (the job waits for one). Otherwise the oldest release the farm has that is not older
 * than the file's (the closest to what the artist saw), else the newest. Null when the
 * farm reports no version at all.
 */
export function chooseBlender(requested: string | null, savedWith: string | null, available: readonly string[]): BlenderChoice | null {
  if (requested) return { version: requested, olderThanFile: savedWith !== null && compareVersions(requested, savedWith) < 0 };
  const releases = [...new Set(available.map(releaseOf).filter(Boolean))].sort(compareVersions);
  if (releases.length === 0) return null;
  const fitting = savedWith ? releases.find((release) => compareVersions(release, savedWith) >= 0) : releases.at(-1);
  if (fitting) return { version: fitting, olderThanFile: false };
  return { version: releases.at(-1)!, olderThanFile: true };
}

/** The installation a worker uses for a version (the newest that matches), or undefined. */
export function pickInstalled<T extends { version: string }>(installations: readonly T[], wanted: string): T | undefined {
  return installations.filter((one) => versionMatches(one.version, wanted)).sort((a, b) => compareVersions(b.version, a.version))[0];
}
