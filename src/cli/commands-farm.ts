import path from 'node:path';
import type { Command } from 'commander';
import { loadSettings, type WorkerSettings } from '../config/index.ts';
import { startServer } from '../server/index.ts';
import { createLogger, type Logger } from '../util/log.ts';
import { RenderWorker } from '../worker/index.ts';

/** Commander gives camelCase options; settings use snake_case keys. Undefined means "not given". */
function settingFlags(options: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  const flags: Record<string, unknown> = {};
  for (const key of keys) {
    const camel = key.replace(/_(\w)/g, (_m, c: string) => c.toUpperCase());
    if (options[camel] !== undefined) flags[key] = options[camel];
  }
  return flags;
}

const int = (value: string) => {
  if (!/^\d+$/.test(value)) throw new Error(`expected a whole number, got "${value}"`);
  return Number(value);
};

const SERVER_FLAGS = ['port', 'web_port', 'bind', 'data_dir', 'ffmpeg_path', 'token', 'max_upload_mb', 'log_level'];
const WORKER_FLAGS = ['blender_path', 'threads', 'address', 'port', 'web_port', 'token', 'name', 'cache_dir', 'log_level'];

export function registerFarmCommands(program: Command): void {
  program
    .command('server')
    .description('run the server: job queue, web UI and API, video encoding')
    .option('-c, --config <file>', 'settings file (default: ./settings.conf if present)')
    .option('--port <n>', 'WebSocket port for workers', int)
    .option('--web-port <n>', 'HTTP port for the web UI and API', int)
    .option('--bind <address>', 'address to listen on')
    .option('--data-dir <dir>', 'folder for the database, uploads and frames')
    .option('--ffmpeg-path <path>', 'ffmpeg executable')
    .option('--token <token>', 'farm token (default: generated in the data folder)')
    .option('--max-upload-mb <n>', 'largest accepted upload in MiB', int)
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent')
    .action(async (options) => {
      const settings = loadSettings('server', { file: options.config, flags: settingFlags(options, SERVER_FLAGS) });
      const log = createLogger('server', settings.log_level);
      const server = await startServer(settings, log);
      printBanner(server.httpUrl, server.token, server.dataDir.tokenFile);
      stopOnSignal(log, () => server.close());
    });

  program
    .command('worker')
    .description('run a render worker that connects to a server')
    .option('-c, --config <file>', 'settings file (default: ./settings.conf if present)')
    .option('--blender-path <path>', 'Blender executable')
    .option('--threads <n>', 'render threads (0 = let Blender decide)', int)
    .option('--address <host>', "the server's host name or address")
    .option('--port <n>', "the server's WebSocket port", int)
    .option('--web-port <n>', "the server's HTTP port", int)
    .option('--token <token>', 'farm token (or ARCHENLAND_TOKEN)')
    .option('--name <name>', 'name shown in the web UI')
    .option('--cache-dir <dir>', 'folder for downloaded scenes and frames')
    .option('--log-level <level>', 'log verbosity')
    .action(async (options) => {
      const settings = loadSettings('worker', { file: options.config, flags: settingFlags(options, WORKER_FLAGS) });
      if (!settings.token) {
        throw new Error('a worker needs the farm token: pass --token, set ARCHENLAND_TOKEN, or put token = "..." in settings.conf (the server prints it on first start and keeps it in its data folder, file farm-token)');
      }
      const log = createLogger('worker', settings.log_level);
      const worker = new RenderWorker({ ...settings, token: settings.token }, log);
      stopOnSignal(log, () => worker.shutdown());
      const reason = await worker.run();
      if (reason !== 'shut down') {
        console.error(`archenland worker: ${reason}`);
        process.exit(2);
      }
    });

  program
    .command('start')
    .description('run a server and one local worker together: a whole farm on this machine')
    .option('-c, --config <file>', 'server settings file (default: ./settings.conf if present)')
    .option('--worker-config <file>', 'settings file for the local worker (default: built-in defaults)')
    .option('--web-port <n>', 'HTTP port for the web UI and API', int)
    .option('--port <n>', 'WebSocket port', int)
    .option('--data-dir <dir>', 'folder for the database, uploads and frames')
    .option('--blender-path <path>', 'Blender executable for the local worker')
    .option('--threads <n>', 'render threads for the local worker (0 = all)', int)
    .option('--log-level <level>', 'log verbosity')
    .action(async (options) => {
      const settings = loadSettings('server', { file: options.config, flags: settingFlags(options, ['port', 'web_port', 'data_dir', 'log_level']) });
      const log = createLogger('farm', settings.log_level);
      const server = await startServer(settings, log.child({ process: 'server' }));
      const workerSettings: WorkerSettings = loadSettings('worker', {
        // ./settings.conf belongs to the server here; the local worker reads a file only when named.
        file: options.workerConfig ?? false,
        flags: {
          ...settingFlags(options, ['blender_path', 'threads', 'log_level']),
          address: '127.0.0.1',
          port: server.wsPort,
          web_port: server.httpPort,
          cache_dir: path.join(settings.data_dir, 'local-worker'),
        },
      });
      const worker = new RenderWorker({ ...workerSettings, token: server.token }, log.child({ process: 'worker' }));
      printBanner(server.httpUrl, server.token, server.dataDir.tokenFile);
      stopOnSignal(log, async () => {
        await worker.shutdown();
        await server.close();
      });
      const reason = await worker.run();
      if (reason !== 'shut down') log.error({ reason }, 'the local worker stopped; the server keeps running');
    });
}

function printBanner(url: string, token: string, tokenFile: string): void {
  console.log(`Archenland is running: open ${url} in a browser.`);
  console.log(`Add workers on other machines with: archenland worker --address <this machine> --token ${token}`);
  console.log(`(the token is kept in ${tokenFile})`);
}

function stopOnSignal(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    log.info({ signal }, 'stopping');
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

