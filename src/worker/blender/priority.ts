import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import type { Logger } from '../../util/log.ts';

/**
 * Runs Blender politely (worker setting `nice`), so the person at a workstation keeps a
 * usable machine while it renders: a higher niceness for the CPU, and the lowest levels
 * of the best-effort class for disk I/O.
 *
 * Node cannot set a child's priority before it starts, so it is set on the process right
 * after spawn, while Blender is still loading. Linux keeps a niceness per thread, and new
 * threads take their creator's: every thread that exists is reniced, at spawn and again
 * when Blender reports ready, so any thread started in between is caught too.
 */
export function lowerPriority(pid: number | undefined, nice: number, logger: Logger): void {
  if (pid === undefined || nice === 0) return;
  // A worker already started nicer (a service's Nice=) keeps that: raising priority needs privilege.
  const target = Math.max(nice, getPriority());
  const threads = threadsOf(pid);
  for (const tid of threads) {
    try {
      setPriority(tid, target);
    } catch (error) {
      // The process may have exited already; its own exit is reported elsewhere.
      logger.debug({ pid, tid, error: (error as Error).message }, 'could not set the niceness of a Blender thread');
    }
  }
  setIoPriority(threads, ioLevelOf(target), logger);
}

/**
 * The kernel's own mapping from niceness to a best-effort I/O level (0 highest, 7 lowest),
 * as it applies to a process that has no I/O priority of its own.
 */
export function ioLevelOf(nice: number): number {
  return Math.min(7, Math.max(0, Math.floor((nice + 20) / 5)));
}

/** Thread ids of a process; the process id alone where /proc is not there (not Linux). */
function threadsOf(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number).filter(Number.isInteger);
  } catch {
    return [pid];
  }
}

/**
 * `ionice` (util-linux) sets the I/O priority; Node has no call for it. Without it the
 * kernel derives the same level from the niceness for I/O schedulers that use priorities
 * (BFQ), so its absence is only logged.
 */
function setIoPriority(threads: number[], level: number, logger: Logger): void {
  execFile('ionice', ['-c', '2', '-n', String(level), '-p', ...threads.map(String)], (error) => {
    if (error) logger.debug({ error: error.message }, 'could not set the I/O priority of Blender (is ionice installed?)');
  });
}
