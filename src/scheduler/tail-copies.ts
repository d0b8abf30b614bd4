import { shareOf, type JobEntry } from './job-entry.ts';

/** A unit rendering on one worker that an idle worker might copy, and how long it has left. */
export interface TailCandidate {
  entry: JobEntry;
  unit: string;
  holder: string;
  /** Expected milliseconds until its holder finishes it. */
  left: number;
  /** The part of a whole frame it is (1/N for a tile). */
  share: number;
}

/**
 * The units worth copying at the tail of the queue, the longest expected wait first. Time
 * left is the holder's average minus time spent; a unit past its holder's average is
 * guessed to need half that average more; on a worker not yet measured, as long again as
 * it has run so far.
 */
export function tailCandidates(order: readonly JobEntry[], averageMs: ReadonlyMap<string, number>, now: number): TailCandidate[] {
  const candidates: TailCandidate[] = [];
  for (const entry of order) {
    if (entry.paused) continue;
    for (const [unit, holders] of entry.inFlight) {
      if (holders.size !== 1) continue;
      const [[holder, startedAt]] = holders;
      const share = shareOf(entry, unit);
      const elapsed = now - startedAt;
      const average = averageMs.get(holder);
      const expected = average === undefined ? undefined : average * share;
      const left = expected === undefined ? elapsed : expected > elapsed ? expected - elapsed : expected / 2;
      candidates.push({ entry, unit, holder, left, share });
    }
  }
  return candidates.sort((a, b) => b.left - a.left);
}
