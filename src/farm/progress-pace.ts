/**
 * How often workers report a render's progress.
 *
 * Each report costs the server a parse, a validation and an update to every page watching.
 * At 2,000 workers reporting 4 times a second, reports were the largest cost of a farm
 * finishing 250 frames a second, and they delayed every assignment behind them. So the
 * connected workers share a budget of reports a second: a small farm reports every 250 ms,
 * a big one less often.
 *
 * The interval moves in doubling steps, and steps back down only once the farm is well
 * under budget, so a worker joining and leaving near a step does not make the server tell
 * every worker again and again.
 */
export const PROGRESS_STEPS_MS = [250, 500, 1_000, 2_000, 4_000, 8_000, 16_000] as const;

/** Below this share of the budget, the next shorter step is taken. */
const STEP_DOWN_BELOW = 0.75;

/** Reports a second that `workers` send at one report each `intervalMs`. */
const reportsPerSecond = (workers: number, intervalMs: number) => (workers * 1000) / intervalMs;

/** The shortest step at which `workers` stay within `budget` reports a second (the longest step if none does). */
function shortestFitting(workers: number, budget: number): number {
  return PROGRESS_STEPS_MS.find((step) => reportsPerSecond(workers, step) <= budget) ?? PROGRESS_STEPS_MS.at(-1)!;
}

/**
 * The interval for `workers` connected workers, given the one they use now and the farm's
 * budget of reports a second (setting progress_reports_per_second).
 */
export function progressInterval(currentMs: number, workers: number, budget: number): number {
  const fitting = shortestFitting(workers, budget);
  if (fitting >= currentMs) return fitting;
  const comfortable = shortestFitting(workers, budget * STEP_DOWN_BELOW);
  return Math.min(currentMs, comfortable);
}
