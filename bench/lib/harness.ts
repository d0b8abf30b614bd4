/**
 * The small shared harness of the benchmark suite: what a benchmark is, what it returns,
 * and the statistics every benchmark uses. A benchmark is one file under bench/ that
 * exports a `Benchmark`; bench/run.ts lists them.
 *
 * Rule: performance claims are ratios measured side by side in one run, or medians of
 * repeated runs — never a single timing, never a timed unit test.
 */
import { performance } from 'node:perf_hooks';

export interface BenchContext {
  /** `--quick`: smaller sizes, for a fast look (figures are marked as quick in the report). */
  quick: boolean;
  /**
   * The `--key=value` options of the command line, as given (e.g. `--workers=200`). Read them
   * with `option()` from bench/lib/options.ts, which checks and types them.
   */
  options: Readonly<Record<string, string>>;
  /** Progress lines for the person watching; not part of the report. */
  log(message: string): void;
}

/** One line of the results table. */
export interface Row {
  /** What is measured, e.g. "(c)/(a) farm / plain -a". */
  figure: string;
  /** The measured value, formatted (e.g. "1.12×", "2.31 s"). */
  value: string;
  /** The target, formatted (e.g. "≤ 1.05"); empty when the row is informational. */
  target?: string;
  /** true / false against the target; undefined for informational rows. */
  pass?: boolean;
}

export interface BenchResult {
  rows: Row[];
  /** Markdown: method, sizes, raw figures, caveats. Goes into the report under the benchmark. */
  details: string;
}

export interface Benchmark {
  /** Command-line name: `npm run bench -- <name>`. */
  name: string;
  /** Title in the report. */
  title: string;
  run(ctx: BenchContext): Promise<BenchResult>;
}

// ---- statistics -------------------------------------------------------------------

export function median(values: number[]): number {
  return quantile(values, 0.5);
}

/** Linear-interpolated quantile (q in 0..1) of unsorted values; NaN when empty. */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  const position = (sorted.length - 1) * q;
  const lower = Math.floor(position);
  const upper = Math.ceil(position);
  return sorted[lower]! + (sorted[upper]! - sorted[lower]!) * (position - lower);
}

export function mean(values: number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

/** Least-squares slope of y over x. */
export function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return Number.NaN;
  const mx = mean(xs);
  const my = mean(ys);
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? Number.NaN : num / den;
}

// ---- timing -------------------------------------------------------------------------

export const now = () => performance.now();

export async function timed<T>(work: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = now();
  const value = await work();
  return { ms: now() - start, value };
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Resolves when `check` returns a truthy value, polling; rejects after the timeout. */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 60_000, everyMs = 50): Promise<T> {
  const deadline = now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

// ---- formatting ---------------------------------------------------------------------

export const fmtMs = (ms: number) => (Number.isNaN(ms) ? '—' : ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`);
/** "1.93 s (1.85–2.10)": the median of several runs, with their min and max. */
export function fmtSpread(values: number[], format: (value: number) => string): string {
  if (values.length < 2) return format(median(values));
  return `${format(median(values))} (${format(Math.min(...values))}–${format(Math.max(...values))})`;
}

export const fmtS = (ms: number) => (Number.isNaN(ms) ? '—' : `${(ms / 1000).toFixed(2)} s`);
export const fmtRatio = (r: number) => (Number.isNaN(r) ? '—' : `${r.toFixed(r >= 10 ? 1 : 3)}×`);
export const fmtMB = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
export const fmtPct = (fraction: number) => `${(fraction * 100).toFixed(1)} %`;
export const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US');

/** A markdown table from a header and rows of cells. */
export function mdTable(header: string[], rows: Array<Array<string | number>>): string {
  const line = (cells: Array<string | number>) => `| ${cells.map((c) => String(c).replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}
