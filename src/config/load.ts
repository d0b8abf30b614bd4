import path from 'node:path';
import { z } from 'zod';
import { ConfigError, type ConfigErrorLocation } from './errors.ts';
import { expectedValue, shownValue } from './describe.ts';
import { readEnvSettings } from './env.ts';
import { lineOfKey, readSettingsFile, type SettingsFile } from './file.ts';
import {
  PATH_SETTINGS,
  settingsSchemas,
  settingsShape,
  workerSchema,
  type ServerSettings,
  type Settings,
  type SettingsKind,
  type StartSettings,
  type WorkerSettings,
} from './schema.ts';

export interface LoadSettingsOptions {
  /** Settings file; defaults to ./settings.conf, which may be absent. `false` reads no file. */
  file?: string | false;
  /** Defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Command-line values, already typed and keyed by setting name; undefined means "not given". */
  flags?: Record<string, unknown>;
}

/** Where a value came from: decides how errors point at it and what relative paths are relative to. */
type Origin =
  | { from: 'file'; file: SettingsFile }
  | { from: 'env'; variable: string; raw: string }
  | { from: 'flag' };

interface Given {
  key: string;
  value: unknown;
  origin: Origin;
}

/**
 * Settings for a server or worker process. Precedence, lowest first:
 * built-in defaults, settings file, ARCHENLAND_* environment variables, flags.
 * Directory settings come back as absolute paths. Throws ConfigError.
 */
export function loadSettings(kind: 'server', opts?: LoadSettingsOptions): ServerSettings;
export function loadSettings(kind: 'worker', opts?: LoadSettingsOptions): WorkerSettings;
export function loadSettings(kind: 'start', opts?: LoadSettingsOptions): StartSettings;
export function loadSettings(kind: SettingsKind, opts?: LoadSettingsOptions): Settings;
export function loadSettings(kind: SettingsKind, opts: LoadSettingsOptions = {}): Settings {
  return loadSettingsAndSources(kind, opts).settings;
}

/**
 * Like loadSettings, and also which keys were given (in the file, the environment or a
 * flag) rather than left to their defaults: `start` passes only those to its local worker,
 * so they override the worker's own settings file and defaults do not.
 */
export function loadSettingsAndSources(kind: SettingsKind, opts: LoadSettingsOptions = {}): { settings: Settings; given: Set<string> } {
  const cwd = process.cwd();
  const file = opts.file === false ? undefined : readSettingsFile(opts.file, cwd);
  const layers: Given[] = [
    ...fileLayer(file),
    ...envLayer(kind, opts.env ?? process.env),
    ...flagLayer(opts.flags ?? {}),
  ];

  // Every value is checked on its own, so a broken file line is reported even
  // when an environment variable or flag overrides it.
  const winners = new Map<string, Given>();
  for (const given of layers) {
    check(kind, given);
    winners.set(given.key, given);
  }

  // Fills in defaults; each value already passed, so this only fails on rules spanning several keys.
  const merged = Object.fromEntries([...winners].map(([key, given]) => [key, given.value]));
  const parsed = settingsSchemas[kind].safeParse(merged);
  if (!parsed.success) throw new ConfigError(`invalid ${kind} settings: ${z.prettifyError(parsed.error)}`);

  const settings: Record<string, unknown> = parsed.data;
  for (const key of PATH_SETTINGS) {
    if (typeof settings[key] !== 'string') continue;
    const origin = winners.get(key)?.origin;
    const base = origin?.from === 'file' ? path.dirname(origin.file.path) : cwd;
    settings[key] = path.resolve(base, settings[key]);
  }
  return { settings: settings as Settings, given: new Set(winners.keys()) };
}

function fileLayer(file: SettingsFile | undefined): Given[] {
  if (file === undefined) return [];
  const origin: Origin = { from: 'file', file };
  return Object.entries(file.values).map(([key, value]) => ({ key, value, origin }));
}

function envLayer(kind: SettingsKind, env: NodeJS.ProcessEnv): Given[] {
  return readEnvSettings(settingsShape(kind), env).map(({ key, value, variable, raw }) => ({
    key,
    value,
    origin: { from: 'env', variable, raw },
  }));
}

function flagLayer(flags: Record<string, unknown>): Given[] {
  return Object.entries(flags)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => ({ key, value, origin: { from: 'flag' } }));
}

function check(kind: SettingsKind, { key, value, origin }: Given): void {
  const shape = settingsShape(kind);
  const schema = shape[key];
  if (schema === undefined) {
    const hint = misplacedKeyHint(kind, key);
    const known = `(${hint}known keys: ${Object.keys(shape).join(', ')})`;
    // Environment variables are only read for known keys, so an unknown one is from the file or a flag.
    if (origin.from === 'flag') throw new ConfigError(`unknown command-line setting "${key}" ${known}`, { key });
    const { prefix, location } = describeOrigin(origin, key);
    throw new ConfigError(`${prefix}unknown key "${key}" ${known}`, location);
  }
  const result = schema.safeParse(value);
  if (result.success) return;

  const { prefix, location } = describeOrigin(origin, key);
  const subject = origin.from === 'file' ? `key "${key}": ` : '';
  // A value of the right type that a rule of its own refuses (a schedule, say) says why in its own words.
  const refused = result.error.issues.find((issue) => issue.code === 'custom');
  if (refused) throw new ConfigError(`${prefix}${subject}${refused.message}`, location);
  const got = shownValue(key, origin.from === 'env' ? origin.raw : value);
  // One bad item of a list (a tag) is named with what is wrong with it.
  const badItem = result.error.issues.find((issue) => issue.code === 'invalid_format' && typeof issue.path[0] === 'number');
  if (badItem && Array.isArray(value)) {
    throw new ConfigError(`${prefix}${subject}${shownValue(key, value[badItem.path[0] as number])}: ${badItem.message}`, location);
  }
  throw new ConfigError(`${prefix}${subject}expected ${expectedValue(schema)}, got ${got}`, location);
}

/** Why a key of the other process kind is refused here, or '' for a key nobody knows. */
function misplacedKeyHint(kind: SettingsKind, key: string): string {
  if (kind === 'start') {
    return key in workerSchema.shape ? "`archenland start` connects its local worker to this server by itself, so it takes no worker's connection setting; " : '';
  }
  const otherKind: SettingsKind = kind === 'server' ? 'worker' : 'server';
  return key in settingsShape(otherKind) ? `it is a ${otherKind} setting; ` : '';
}

function describeOrigin(origin: Origin, key: string): { prefix: string; location: ConfigErrorLocation } {
  switch (origin.from) {
    case 'file': {
      const line = lineOfKey(origin.file.source, key);
      const at = line === undefined ? origin.file.display : `${origin.file.display}:${line}`;
      return { prefix: `${at}: `, location: { file: origin.file.path, key, line } };
    }
    case 'env':
      return { prefix: `environment variable ${origin.variable}: `, location: { key } };
    case 'flag':
      return { prefix: `command-line flag --${key.replaceAll('_', '-')}: `, location: { key } };
  }
}
