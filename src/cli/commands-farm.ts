import path from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import {
  ConfigError,
  describeSettings,
  loadSettings,
  loadStartSettings,
  LOCAL_WORKER_KEYS,
  TABLE_SETTINGS,
  serverSchema,
  startSchema,
  workerSchema,
  type SettingDescription,
  type SettingsKind,
  type WorkerSettings,
} from '../config/index.ts';
import type { Logger } from '../util/log.ts';
import type { RunningServer } from '../server/index.ts';
import { examples, EXIT, integer } from './common.ts';

/** Commander gives camelCase options; settings use snake_case keys. Undefined means "not given". */
function settingFlags(options: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  const flags: Record<string, unknown> = {};
  for (const key of keys) {
    const camel = key.replace(/_(\w)/g, (_m, c: string) => c.toUpperCase());
    if (options[camel] !== undefined) flags[key] = options[camel];
  }
  return flags;
}

const flagName = (key: string) => `--${key.replaceAll('_', '-')}`;

/**
 * One flag per setting, generated from the settings schema (src/config/schema.ts), so every
 * key of settings.conf can also be given as ARCHENLAND_<KEY> or as a flag, with the same
 * description. Values are typed here and validated (ranges, choices) by loadSettings.
 */
function addSettingFlags(command: Command, kind: SettingsKind, keys: readonly string[], describe: (s: SettingDescription) => string = (s) => s.description): Command {
  const settings = new Map(describeSettings(kind).map((s) => [s.key, s]));
  for (const key of keys) {
    const setting = settings.get(key);
    if (!setting) throw new Error(`no ${kind} setting ${key}`);
    const type = setting.type;
    const valueName = type.startsWith('integer') ? 'n' : type === 'boolean' ? 'true|false' : type === 'URL' ? 'url' : key.endsWith('_path') || key.endsWith('_dir') ? 'path' : 'value';
    const option = new Option(`${flagName(key)} <${valueName}>`, `${describe(setting)} (${setting.env})`);
    if (type.startsWith('integer')) option.argParser(integer());
    else if (type === 'boolean') option.argParser(booleanFlag);
    else if (type.startsWith('list of')) option.argParser((text: string) => commaList(text, type === 'list of integers'));
    else if (type.includes('|')) option.choices(type.split('|'));
    command.addOption(option);
  }
  return command;
}

/** "gpu, room-2" -> ["gpu", "room-2"]; "0,1" -> [0, 1] for a list of integers (checked by loadSettings). */
function commaList(text: string, numbers: boolean): unknown[] {
  const items = text.split(',').map((item) => item.trim()).filter(Boolean);
  return numbers ? items.map((item) => (/^\d+$/.test(item) ? Number(item) : item)) : items;
}

function booleanFlag(value: string): boolean {
  const lower = value.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(lower)) return true;
  if (['false', '0', 'no', 'off'].includes(lower)) return false;
  throw new InvalidArgumentError(`expected true or false, got "${value}"`);
}

/**
 * The server and worker (Fastify, SQLite, sharp, Blender drivers …) load only for the
 * commands that run them, so client commands like `jobs` start in a fraction of the time.
 */
async function farmModules() {
  const [{ startServer }, { RenderWorker }, { createLogger }] = await Promise.all([
    import('../server/index.ts'),
    import('../worker/index.ts'),
    import('../util/log.ts'),
  ]);
  return { startServer, RenderWorker, createLogger };
}

const SERVER_KEYS = Object.keys(serverSchema.shape);
/** Settings a flag can carry; a table ([blenders]) is written in settings.conf only. */
const flagKeys = (keys: string[]) => keys.filter((key) => !TABLE_SETTINGS.includes(key));
const WORKER_KEYS = flagKeys(Object.keys(workerSchema.shape));
/** `start` runs both: server settings, plus its local worker's (LOCAL_WORKER_KEYS). */
const START_KEYS = flagKeys(Object.keys(startSchema.shape));

/** Settings that are tables have no flag: they are told after the flags, as settings.conf takes them. */
function tableSettingsHelp(kind: SettingsKind): string {
  const tables = describeSettings(kind).filter((setting) => TABLE_SETTINGS.includes(setting.key));
  return tables.map((setting) => `\nIn settings.conf only, as a table [${setting.key}]: ${setting.description}.\n`).join('');
}

const PRECEDENCE = '\nSettings: built-in defaults < settings.conf < ARCHENLAND_<KEY> environment variables < flags.\nEvery key is described in docs/cli.md and README.md.\n';

export function registerFarmCommands(program: Command): void {
  const server = program
    .command('server')
    .description('run the server: job queue, web UI and API, video encoding')
    .option('-c, --config <file>', 'settings file (default: ./settings.conf if present)');
  addSettingFlags(server, 'server', SERVER_KEYS)
    .addHelpText('after', PRECEDENCE)
    .action(async (options) => {
      const settings = loadSettings('server', { file: options.config, flags: settingFlags(options, SERVER_KEYS) });
      const { startServer, createLogger } = await farmModules();
      const log = createLogger('server', settings.log_level, settings.log_format);
      const running = await startServer(settings, log);
      printBanner(running);
      stopOnSignal(log, () => running.close());
    });
  examples(server, [
    'archenland server',
    'archenland server --web-port 9000 --data-dir /srv/archenland',
    'ARCHENLAND_WEBHOOK_URL=https://chat.example/hooks/render archenland server',
    'archenland server -c /etc/archenland/settings.conf',
  ]);

  const worker = program
    .command('worker')
    .description('run a render worker that connects to a server')
    .option('-c, --config <file>', 'settings file (default: ./settings.conf if present)');
  addSettingFlags(worker, 'worker', WORKER_KEYS)
    .addHelpText('after', `${PRECEDENCE}${tableSettingsHelp('worker')}`)
    .action(async (options) => {
      const settings = loadSettings('worker', { file: options.config, flags: settingFlags(options, WORKER_KEYS) });
      if (!settings.token) {
        throw new ConfigError(
          'a worker needs a worker token: put token = "..." in settings.conf or set ARCHENLAND_TOKEN (the server makes one on first start in its data folder, file worker-token; more with `archenland token create --role worker`)',
        );
      }
      const { RenderWorker, createLogger } = await farmModules();
      const log = createLogger('worker', settings.log_level, settings.log_format);
      const renderWorker = new RenderWorker({ ...settings, token: settings.token }, log);
      stopOnSignal(log, () => renderWorker.drain(DRAIN_GRACE_MS));
      const reason = await renderWorker.run();
      if (reason !== 'shut down') {
        console.error(`archenland worker: ${reason}`);
        process.exit(EXIT.usage);
      }
    });
  examples(worker, [
    'archenland worker --address render-server          # token = "…" in ./settings.conf',
    'archenland worker --address 10.0.0.5 --threads 8 --name gpu-box',
    'archenland worker --address render-server --nice 19   # an artist\'s workstation: Blender yields to everything else',
    'archenland worker --address render-server --schedule "Mon-Fri 18:00-08:00; Sat-Sun"   # nights and weekends only',
    'ARCHENLAND_TOKEN="$(cat worker-token)" archenland worker -c worker.conf',
  ]);

  const start = program
    .command('start')
    .description('run a server and one local worker together: a whole farm on this machine')
    .option('-c, --config <file>', "settings file of the server and its local worker (default: ./settings.conf if present)")
    .option('--worker-config <file>', "a separate settings file for the local worker; the worker's keys in --config, the environment and flags override it");
  addSettingFlags(start, 'start', START_KEYS, (s) => (LOCAL_WORKER_KEYS.includes(s.key) ? `local worker: ${s.description}` : s.description))
    .addHelpText('after', `${PRECEDENCE}${tableSettingsHelp('start')}`)
    .action(async (options) => {
      const { server: settings, localWorker: localWorkerGiven } = loadStartSettings({ file: options.config, flags: settingFlags(options, START_KEYS) });
      const { startServer, RenderWorker, createLogger } = await farmModules();
      const log = createLogger('farm', settings.log_level, settings.log_format);
      const running = await startServer(settings, log.child({ process: 'server' }));
      const workerSettings: WorkerSettings = loadSettings('worker', {
        // ./settings.conf was read above, for the server and the local worker's keys in it.
        file: options.workerConfig ?? false,
        flags: {
          cache_dir: path.join(settings.data_dir, 'local-worker'),
          ...localWorkerGiven,
          log_level: settings.log_level,
          address: '127.0.0.1',
          port: running.wsPort,
          web_port: running.httpPort,
          // A TLS server: its own certificate, pinned. Not tls_cert as a CA: 127.0.0.1 is
          // rarely a name the certificate lists, and a CA-signed one is no trust anchor.
          ...(running.tlsFingerprint ? { tls: true, tls_fingerprint: running.tlsFingerprint } : {}),
        },
      });
      const workerToken = running.tokens.worker ?? running.tokens.farm;
      if (!workerToken) {
        await running.close();
        throw new ConfigError(`the local worker needs the server's worker token, but ${running.dataDir.workerTokenFile} is gone: create one with \`archenland token create --role worker\` and save it there`);
      }
      const localWorker = new RenderWorker({ ...workerSettings, token: workerToken }, log.child({ process: 'worker' }));
      printBanner(running);
      stopOnSignal(log, async () => {
        await localWorker.drain(DRAIN_GRACE_MS);
        await running.close();
      });
      const reason = await localWorker.run();
      if (reason !== 'shut down') log.error({ reason }, 'the local worker stopped; the server keeps running');
    });
  examples(start, ['archenland start', 'archenland start --web-port 9000 --threads 4', 'archenland start --blender-path /opt/blender-4.2/blender']);
}

/**
 * On SIGTERM/SIGINT a worker finishes and uploads its frame before leaving, for at most
 * this long; a second signal stops it at once.
 */
const DRAIN_GRACE_MS = 30 * 60 * 1000;

function printBanner(running: RunningServer): void {
  const { httpUrl, dataDir } = running;
  console.log(`Archenland is running: open ${httpUrl} in a browser.`);
  if (running.tlsFingerprint) console.log(`Its certificate's SHA-256 fingerprint, for tls_fingerprint on workers: ${running.tlsFingerprint}`);
  // Where the tokens are, never the tokens: a terminal's scrollback and logs travel.
  console.log(`The user token (web UI, CLI, API) is in ${dataDir.userTokenFile}.`);
  console.log(`Add workers on other machines: put the worker token from ${dataDir.workerTokenFile} into their settings.conf (token = "…"),`);
  console.log('then run: archenland worker --address <this machine>');
}

function stopOnSignal(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    log.info({ signal }, 'stopping (send the signal again to stop at once)');
    stop().then(
      () => process.exit(0),
      (error) => {
        log.error({ err: error }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

