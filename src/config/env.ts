import { z } from 'zod';
import { baseSchema, isNumberList } from './schema.ts';

/** ARCHENLAND_WEB_PORT for "web_port". */
export function envVarName(key: string): string {
  return `ARCHENLAND_${key.toUpperCase()}`;
}

export interface EnvSetting {
  key: string;
  variable: string;
  /** The raw text, for error messages. */
  raw: string;
  /** The text converted to the setting's type, or left as text when it does not convert (validation reports it). */
  value: unknown;
}

/** The settings overridden by environment variables. Variables for settings of the other process kind are ignored. */
export function readEnvSettings(shape: Record<string, z.ZodType>, env: NodeJS.ProcessEnv): EnvSetting[] {
  const found: EnvSetting[] = [];
  for (const [key, schema] of Object.entries(shape)) {
    const variable = envVarName(key);
    const raw = env[variable];
    // Empty counts as unset: compose files and shell scripts often pass `FOO=${FOO}` for an unset FOO.
    if (raw === undefined || raw === '') continue;
    found.push({ key, variable, raw, value: coerce(raw, baseSchema(schema)) });
  }
  return found;
}

function coerce(raw: string, schema: z.ZodType): unknown {
  const text = raw.trim();
  // Decimal only: Number() would also accept "", "0x1F" and "1e3", which are more likely mistakes than intent.
  if (schema instanceof z.ZodNumber) return /^[+-]?\d+(\.\d+)?$/.test(text) ? Number(text) : raw;
  if (schema instanceof z.ZodBoolean) {
    const lower = text.toLowerCase();
    if (lower === 'true' || lower === '1') return true;
    if (lower === 'false' || lower === '0') return false;
    return raw;
  }
  // Lists: ARCHENLAND_PUBLIC_HOSTS="farm.example, render.lan"
  if (schema instanceof z.ZodArray) {
    const items = text.split(',').map((item) => item.trim()).filter(Boolean);
    return isNumberList(schema) ? items.map((item) => (/^\d+$/.test(item) ? Number(item) : item)) : items;
  }
  return raw;
}
