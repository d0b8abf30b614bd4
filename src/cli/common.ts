import { createInterface } from 'node:readline';
import { InvalidArgumentError, type Command } from 'commander';
import { SingleBar, Presets } from 'cli-progress';
import { apiPath, type Job, type Worker } from '../protocol/index.ts';
import { TlsClient } from '../util/tls-client.ts';
import { ApiClient, ApiError, resolveClient, type ClientOptions } from './client.ts';

/** Exit codes scripts can rely on (docs/cli.md). */
export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const;

/** A mistake in the command line or its inputs: exit 2. */
export class UsageError extends Error {}

/** The user said no, or could not be asked: exit 1, nothing changed. */
export class RefusedError extends Error {}

export interface CommonOptions extends ClientOptions {
  json?: boolean;
}

/** --server, --token, --config, --tls-ca, --tls-fingerprint and --json, shared by every command that talks to a server. */
export function withClientOptions(command: Command): Command {
  return command
    .option('--server <url>', 'server URL (env ARCHENLAND_SERVER; default: from settings.conf here, else http://127.0.0.1:8080)')
    .option('--token <token>', 'access token (env ARCHENLAND_TOKEN; default: the token file of a server set up here)')
    .option('-c, --config <file>', 'settings file to find the server in (default: ./settings.conf if present)')
    .option('--tls-ca <file>', "https: PEM file of the authority that signed the server's certificate (env ARCHENLAND_TLS_CA)")
    .option('--tls-fingerprint <hex>', "https: accept exactly the certificate with this SHA-256 fingerprint (env ARCHENLAND_TLS_FINGERPRINT)")
    .option('--json', 'print JSON for scripts (the API\'s own objects)');
}

export function clientFrom(options: ClientOptions): ApiClient {
  const { baseUrl, token, trust } = resolveClient(options);
  return new ApiClient(baseUrl, token, new TlsClient(trust));
}

/** Prints JSON for scripts or text for people, on stdout. */
export function print(json: boolean | undefined, value: unknown, text: string): void {
  console.log(json ? JSON.stringify(value, null, 2) : text);
}

/** Appends an "Examples:" block to a command's --help. */
export function examples(command: Command, lines: string[]): Command {
  return command.addHelpText('after', `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`);
}

/** Runs a check on the user's arguments; its error becomes a usage error (exit 2). */
export function usage<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** Commander argument parser for whole numbers (negative allowed when `min` is). */
export const integer = (min = -Infinity, max = Infinity) => (value: string) => {
  if (!/^[+-]?\d+$/.test(value.trim())) throw new InvalidArgumentError(`expected a whole number, got "${value}"`);
  const n = Number(value);
  if (n < min || n > max) throw new InvalidArgumentError(`expected a number between ${min} and ${max}, got ${n}`);
  return n;
};

/** Server ids are 16 hex digits (see newId); shorter input is taken as a unique prefix or a name. */
const FULL_ID = /^[a-f0-9]{16}$/;

/**
 * Resolves what the user typed to a job id: a full id as is; otherwise a unique id prefix
 * or an exact job name (as `docker` and `git` do), so `archenland pause 3f2a` works.
 */
export async function resolveJobId(client: ApiClient, typed: string): Promise<string> {
  if (FULL_ID.test(typed)) return typed;
  const jobs = await client.get<Job[]>(apiPath('listJobs'));
  return pick('job', typed, jobs.filter((j) => j.id.startsWith(typed)), jobs.filter((j) => j.name === typed));
}

/** Resolves a worker id, id prefix or name to a worker id. */
export async function resolveWorkerId(client: ApiClient, typed: string): Promise<string> {
  if (FULL_ID.test(typed)) return typed;
  const workers = await client.get<Worker[]>(apiPath('listWorkers'));
  return pick('worker', typed, workers.filter((w) => w.id.startsWith(typed)), workers.filter((w) => w.name === typed));
}

function pick<T extends { id: string; name: string }>(kind: string, typed: string, byPrefix: T[], byName: T[]): string {
  const exact = byPrefix.find((x) => x.id === typed);
  if (exact) return exact.id;
  const matches = [...new Map([...byPrefix, ...byName].map((x) => [x.id, x])).values()];
  if (matches.length === 1) return matches[0]!.id;
  if (matches.length === 0) throw new ApiError(`no ${kind} with id or name "${typed}"`, 404);
  throw new UsageError(`"${typed}" matches ${matches.length} ${kind}s (${matches.map((m) => `${m.id} ${m.name}`).join(', ')}): give more of the id`);
}

/**
 * Asks a yes/no question on stderr and reads the answer from stdin. A piped "y" counts;
 * no answer at all (stdin closed, as in scripts and CI) is a no.
 */
export async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: process.stdin.isTTY === true });
  try {
    const answer = await new Promise<string | null>((resolve) => {
      rl.once('close', () => resolve(null));
      rl.question(`${question} [y/N] `, resolve);
    });
    return answer !== null && /^\s*y(es)?\s*$/i.test(answer);
  } finally {
    rl.close();
  }
}

/** A progress bar on stderr; cli-progress draws nothing when stderr is not a terminal, keeping logs clean. */
export function progressBar(format: string): SingleBar {
  return new SingleBar({ format, hideCursor: true, clearOnComplete: false, stream: process.stderr }, Presets.shades_classic);
}

export const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
