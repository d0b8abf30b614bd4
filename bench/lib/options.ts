/**
 * Command-line options of the benchmark suite. bench/run.ts splits the command line once
 * (`parseCommandLine`); the suite and every benchmark then read their options with
 * `option()`, which knows each one's type, default (full and `--quick`) and range.
 *
 * Why one reader: a benchmark runs for minutes, so a mistyped value must stop it at once
 * with a message naming the option and what it takes, not run with NaN or silently fall
 * back to the default.
 */
import type { BenchContext } from './harness.ts';

/** Where options are read from: the benchmark's context, or the suite's own. */
export type OptionSource = Pick<BenchContext, 'quick' | 'options'>;

export interface NumberOption {
  /** The value for a full run, and for `--quick` unless `quick` is given. */
  default: number;
  quick?: number;
  /** Inclusive bounds. */
  min?: number;
  max?: number;
  integer?: boolean;
}

export interface StringOption {
  default: string;
  quick?: string;
}

/** A switch: `--key`, `--key=true|false` (also yes/no, on/off, 1/0), or `--no-key`. */
export interface FlagOption {
  default: boolean;
}

/** A bad option value; bench/run.ts reports it without recording the benchmark as failed. */
export class OptionError extends Error {
  override name = 'OptionError';
}

export interface CommandLine {
  /** Benchmark names, in the order given. */
  names: string[];
  /** `--key=value` → value; a bare `--key` → ''; `--no-key` → 'false'. */
  options: Record<string, string>;
  help: boolean;
}

export function parseCommandLine(args: readonly string[]): CommandLine {
  const line: CommandLine = { names: [], options: {}, help: false };
  for (const arg of args) {
    if (arg === '--help' || arg === '-h') line.help = true;
    else if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const key = arg.slice(2, eq < 0 ? undefined : eq);
      if (eq < 0 && key.startsWith('no-')) line.options[key.slice(3)] = 'false';
      else line.options[key] = eq < 0 ? '' : arg.slice(eq + 1);
    } else line.names.push(arg);
  }
  return line;
}

/** Keys read through `option()`, so the suite can point out options nothing read (typos). */
const read = new Set<string>();

export function option(ctx: OptionSource, key: string, spec: NumberOption): number;
export function option(ctx: OptionSource, key: string, spec: StringOption): string;
export function option(ctx: OptionSource, key: string, spec: FlagOption): boolean;
export function option(ctx: OptionSource, key: string, spec: NumberOption | StringOption | FlagOption): number | string | boolean {
  read.add(key);
  const raw = Object.hasOwn(ctx.options, key) ? ctx.options[key] : undefined;
  if (raw === undefined) return ctx.quick && 'quick' in spec && spec.quick !== undefined ? spec.quick : spec.default;
  if (typeof spec.default === 'boolean') return flag(key, raw);
  if (typeof spec.default === 'number') return number(key, raw, spec as NumberOption);
  if (raw === '') throw new OptionError(`--${key} needs a value: --${key}=…`);
  return raw;
}

/** Options given on the command line that no `option()` call has read so far. */
export function unreadOptions(options: Readonly<Record<string, string>>): string[] {
  return Object.keys(options).filter((key) => !read.has(key));
}

const TRUE = new Set(['', 'true', 'yes', 'on', '1']);
const FALSE = new Set(['false', 'no', 'off', '0']);

function flag(key: string, raw: string): boolean {
  const value = raw.toLowerCase();
  if (TRUE.has(value)) return true;
  if (FALSE.has(value)) return false;
  throw new OptionError(`--${key}=${raw}: expected true or false (or just --${key} / --no-${key})`);
}

function number(key: string, raw: string, spec: NumberOption): number {
  // Number('') is 0, so an empty value is refused before conversion.
  const value = raw.trim() === '' ? Number.NaN : Number(raw);
  const fits =
    Number.isFinite(value) &&
    (!spec.integer || Number.isInteger(value)) &&
    (spec.min === undefined || value >= spec.min) &&
    (spec.max === undefined || value <= spec.max);
  if (fits) return value;
  throw new OptionError(`${raw === '' ? `--${key} needs a value` : `--${key}=${raw}`}: expected ${expected(spec)}`);
}

function expected(spec: NumberOption): string {
  const what = spec.integer ? 'an integer' : 'a number';
  if (spec.min !== undefined && spec.max !== undefined) return `${what} from ${spec.min} to ${spec.max}`;
  if (spec.min !== undefined) return `${what} ≥ ${spec.min}`;
  if (spec.max !== undefined) return `${what} ≤ ${spec.max}`;
  return what;
}
