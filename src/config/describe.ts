import { z } from 'zod';
import { baseSchema, isNumberList, settingsShape, type SettingsKind } from './schema.ts';
import { envVarName } from './env.ts';

/**
 * Reads the settings schemas back into words, so error messages and `--help`
 * text can never drift from what is actually validated.
 */

export interface SettingDescription {
  key: string;
  /** Compact type, e.g. "integer 1..65535", "boolean", "info|debug". */
  type: string;
  /** Built-in default; undefined when the setting is optional and filled in later. */
  default: unknown;
  description: string;
  /** Environment variable that overrides the setting. */
  env: string;
}

export function describeSettings(kind: SettingsKind): SettingDescription[] {
  return Object.entries(settingsShape(kind)).map(([key, schema]) => ({
    key,
    type: typeLabel(schema),
    default: schema instanceof z.ZodDefault ? schema.def.defaultValue : undefined,
    description: schema.description ?? '',
    env: envVarName(key),
  }));
}

/** Completes "expected …", e.g. "an integer between 1 and 65535". */
export function expectedValue(schema: z.ZodType): string {
  const inner = baseSchema(schema);
  if (inner instanceof z.ZodNumber) {
    const noun = inner.isInt ? 'an integer' : 'a number';
    const [min, max] = numberBounds(inner);
    if (min !== undefined && max !== undefined) return `${noun} between ${min} and ${max}`;
    if (min !== undefined) return `${noun} of at least ${min}`;
    if (max !== undefined) return `${noun} of at most ${max}`;
    return noun;
  }
  if (inner instanceof z.ZodBoolean) return 'true or false';
  if (inner instanceof z.ZodEnum) return `one of ${inner.options.join(', ')}`;
  if (inner instanceof z.ZodArray) return isNumberList(inner) ? 'a list of whole numbers, e.g. [0, 1]' : 'a list of strings, e.g. ["a", "b"]';
  if (inner instanceof z.ZodURL) return 'an http:// or https:// URL';
  if (inner instanceof z.ZodUnion) return 'a path, or a list of paths';
  if (inner instanceof z.ZodRecord) return 'a table of strings, e.g. { "4.2" = "/opt/blender-4.2/blender" }';
  if (inner instanceof z.ZodString) {
    const min = inner.minLength ?? 0;
    if (min > 1) return `a string of at least ${min} characters`;
    return min === 1 ? 'a non-empty string' : 'a string';
  }
  return 'a valid value';
}

function typeLabel(schema: z.ZodType): string {
  const inner = baseSchema(schema);
  if (inner instanceof z.ZodNumber) {
    const [min, max] = numberBounds(inner);
    const noun = inner.isInt ? 'integer' : 'number';
    if (min !== undefined && max !== undefined) return `${noun} ${min}..${max}`;
    if (min !== undefined) return `${noun} >= ${min}`;
    if (max !== undefined) return `${noun} <= ${max}`;
    return noun;
  }
  if (inner instanceof z.ZodBoolean) return 'boolean';
  if (inner instanceof z.ZodEnum) return inner.options.join('|');
  if (inner instanceof z.ZodArray) return isNumberList(inner) ? 'list of integers' : 'list of strings';
  if (inner instanceof z.ZodURL) return 'URL';
  if (inner instanceof z.ZodUnion) return 'path or list of paths';
  if (inner instanceof z.ZodRecord) return 'table';
  if (inner instanceof z.ZodString) {
    const min = inner.minLength ?? 0;
    return min > 1 ? `string (${min}+ characters)` : 'string';
  }
  return 'value';
}

// z.int() carries the safe-integer range as bounds; those are not limits worth mentioning.
function numberBounds(schema: z.ZodNumber): [number | undefined, number | undefined] {
  const meaningful = (bound: number | null) =>
    bound === null || Math.abs(bound) >= Number.MAX_SAFE_INTEGER ? undefined : bound;
  return [meaningful(schema.minValue), meaningful(schema.maxValue)];
}

/** A value as quoted in an error message. Tokens are secrets, so only their length is shown. */
export function shownValue(key: string, value: unknown): string {
  if (key === 'token' && typeof value === 'string') return `a ${value.length}-character string`;
  if (typeof value === 'string') return JSON.stringify(value);
  if (value instanceof Date) return `a date (${value.toISOString()})`;
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object' && value !== null) return 'a table';
  return String(value);
}
