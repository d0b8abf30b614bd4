import { existsSync } from 'node:fs';
import { SingleBar, Presets } from 'cli-progress';
import type { Command } from 'commander';
import { formatFrameRange, parseFrameRange, type Job, type Worker } from '../protocol/index.ts';
import { ApiClient, resolveClient, type ClientOptions } from './client.ts';
import { formatJob, formatJobs, formatWorkers } from './format.ts';
import { uploadJob } from './upload.ts';
import { watchJob } from './watch.ts';

/** Exit codes scripts can rely on. */
export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const;

function withClientOptions(command: Command): Command {
  return command
    .option('--server <url>', 'server URL (or ARCHENLAND_SERVER; default: this folder\'s settings.conf, else http://127.0.0.1:8080)')
    .option('--token <token>', 'access token (or ARCHENLAND_TOKEN; default: the token file of a server in this folder)')
    .option('--json', 'print JSON for scripts');
}

function clientFrom(options: ClientOptions): ApiClient {
  const { baseUrl, token } = resolveClient(options);
  return new ApiClient(baseUrl, token);
}

const print = (json: boolean, value: unknown, text: string) => console.log(json ? JSON.stringify(value, null, 2) : text);

export function registerClientCommands(program: Command): void {
  withClientOptions(program.command('submit <file>'))
    .description('upload a .blend and queue it for rendering')
    .option('--frames <range>', 'frames to render: N, A-B or A-B:STEP (default: the scene\'s range)')
    .option('--format <format>', 'output format: PNG, JPEG, OPEN_EXR or TIFF (default: the scene\'s)')
    .option('--resolution <percent>', 'resolution percentage override')
    .option('--samples <n>', 'samples override')
    .option('--priority <n>', 'higher runs first (default 0)')
    .option('--name <name>', 'job name (default: the file name)')
    .option('--allow-scripts', 'let Python scripts inside the .blend run (off by default: only for files you trust)')
    .option('--wait', 'follow the job until it ends; exit 0 only if it completed')
    .action(async (file: string, options) => {
      if (!existsSync(file)) throw new UsageError(`no such file: ${file}`);
      const fields: Record<string, string> = {};
      if (options.frames) fields.frames = formatFrameRange(usage(() => parseFrameRange(options.frames)));
      if (options.format) fields.fileFormat = String(options.format).toUpperCase();
      if (options.resolution) fields.resolutionPercentage = options.resolution;
      if (options.samples) fields.samples = options.samples;
      if (options.priority) fields.priority = options.priority;
      if (options.name) fields.name = options.name;
      if (options.allowScripts) fields.allowScripts = 'true';
      const client = clientFrom(options);
      const uploadBar = progressBar('upload   {bar} {percentage}% | {value_mb}/{total_mb} MB');
      let job: Job;
      try {
        job = await uploadJob(client, file, fields, (sent, total) => {
          if (!uploadBar.isActive) uploadBar.start(total, 0, { value_mb: '0.0', total_mb: mb(total) });
          uploadBar.update(sent, { value_mb: mb(sent), total_mb: mb(total) });
        });
      } finally {
        uploadBar.stop();
      }
      if (!options.wait) return print(options.json, job, `submitted job ${job.id} (${job.name})`);
      if (!options.json) console.log(`submitted job ${job.id} (${job.name}); rendering…`);
      const renderBar = progressBar('frames   {bar} {value}/{total} | {state}');
      let final: Job;
      try {
        final = await watchJob(client, job.id, (update) => {
          if (update.counts.total === 0) return;
          if (!renderBar.isActive) renderBar.start(update.counts.total, 0, { state: update.state });
          renderBar.update(update.counts.done, { state: update.state });
        });
      } finally {
        renderBar.stop();
      }
      print(options.json, final, formatJob(final));
      if (final.state !== 'completed') process.exitCode = EXIT.failed;
    });

  withClientOptions(program.command('jobs'))
    .description('list jobs')
    .action(async (options) => {
      const jobs = await clientFrom(options).get<Job[]>('/api/jobs');
      print(options.json, jobs, formatJobs(jobs));
    });

  withClientOptions(program.command('job <id>'))
    .description('show one job')
    .action(async (id: string, options) => {
      const job = await clientFrom(options).get<Job>(`/api/jobs/${encodeURIComponent(id)}`);
      print(options.json, job, formatJob(job));
    });

  withClientOptions(program.command('workers'))
    .description('list workers')
    .action(async (options) => {
      const workers = await clientFrom(options).get<Worker[]>('/api/workers');
      print(options.json, workers, formatWorkers(workers));
    });

  withClientOptions(program.command('cancel <id>'))
    .description('cancel a job')
    .action(async (id: string, options) => {
      const job = await clientFrom(options).post<Job>(`/api/jobs/${encodeURIComponent(id)}/cancel`);
      print(options.json, job, `cancelled job ${job.id}`);
    });
}

export class UsageError extends Error {}

/** Runs a check on the user's arguments; its error becomes a usage error (exit 2). */
function usage<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

function progressBar(format: string): SingleBar {
  // On a terminal a live bar; elsewhere (CI, pipes) cli-progress prints nothing, keeping logs clean.
  return new SingleBar({ format, hideCursor: true, clearOnComplete: false, stream: process.stderr }, Presets.shades_classic);
}

const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
