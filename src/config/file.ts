import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse, TomlError } from 'smol-toml';
import { ConfigError } from './errors.ts';
import { TABLE_SETTINGS } from './schema.ts';

export const DEFAULT_SETTINGS_FILE = 'settings.conf';

export interface SettingsFile {
  /** Absolute path. */
  path: string;
  /** The path as shown in messages: relative to the cwd when inside it. */
  display: string;
  source: string;
  values: Record<string, unknown>;
}

/**
 * Reads and parses a settings file. Returns undefined when the default file is
 * absent (running on defaults is normal), but a file named explicitly must exist.
 */
export function readSettingsFile(file: string | undefined, cwd: string): SettingsFile | undefined {
  const absolute = path.resolve(cwd, file ?? DEFAULT_SETTINGS_FILE);
  const display = displayPath(absolute, cwd);

  let source: string;
  try {
    source = readFileSync(absolute, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && file === undefined) return undefined;
    const problem = code === 'ENOENT' ? 'settings file not found' : `cannot read settings file (${code ?? String(err)})`;
    throw new ConfigError(`${display}: ${problem}`, { file: absolute }, { cause: err });
  }
  // Editors on Windows like to prepend a byte-order mark, which is not valid TOML.
  source = source.replace(/^\uFEFF/, '');

  let values: Record<string, unknown>;
  try {
    values = parse(source);
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    const reason = err.message.split('\n')[0].replace(/^Invalid TOML document: /, '');
    throw new ConfigError(
      `${display}:${err.line}: TOML syntax error at column ${err.column}: ${reason}\n\n${err.codeblock.trimEnd()}`,
      { file: absolute, line: err.line },
      { cause: err },
    );
  }

  rejectTables(values, source, display, absolute);
  return { path: absolute, display, source, values };
}

/** 1-based line where a top-level key is assigned (or opened as a table), if it can be found. */
export function lineOfKey(source: string, key: string): number | undefined {
  const name = keyPattern(key);
  const assignment = new RegExp(`^\\s*${name}\\s*[=.]`);
  const index = source.split(/\r?\n/).findIndex((line) => assignment.test(line));
  return index === -1 ? lineOfTableHeader(source, key) : index + 1;
}

// Settings are flat; a "[server]" header would silently move every key below it
// out of reach, so it is refused with a pointer to the header. The few settings that
// are tables ([blenders]) are the exception.
function rejectTables(values: Record<string, unknown>, source: string, display: string, file: string): void {
  for (const key of Object.keys(values)) {
    if (TABLE_SETTINGS.includes(key)) continue;
    const line = lineOfTableHeader(source, key);
    if (line === undefined) continue;
    throw new ConfigError(
      `${display}:${line}: table headers like [${key}] are not supported: settings are plain top-level "key = value" lines`,
      { file, key, line },
    );
  }
}

function lineOfTableHeader(source: string, key: string): number | undefined {
  const header = new RegExp(`^\\s*\\[\\[?\\s*${keyPattern(key)}\\s*[\\].]`);
  const index = source.split(/\r?\n/).findIndex((line) => header.test(line));
  return index === -1 ? undefined : index + 1;
}

/** A key as it may be written in TOML: bare, "quoted" or 'literal'. */
function keyPattern(key: string): string {
  const escaped = key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return `(?:${escaped}|"${escaped}"|'${escaped}')`;
}

function displayPath(absolute: string, cwd: string): string {
  const relative = path.relative(cwd, absolute);
  return relative && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : absolute;
}
