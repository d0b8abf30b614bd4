import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { InvalidArgumentError, Option, type Command } from 'commander';
import {
  apiPath,
  formatFrameRange,
  jobPatchSchema,
  jobStates,
  outputFormats,
  parseFrameRange,
  parseTiling,
  formatTiling,
  describeIssues,
  frameOrderSchema,
  tagsSchema,
  blenderVersionSchema,
  type FrameLog,
  type Job,
  type JobDetail,
  type JobPatch,
  type JobProject,
  type Worker,
  type CreatedToken,
  type TokenInfo,
} from '../protocol/index.ts';
import {
  clientFrom,
  confirm,
  examples,
  EXIT,
  integer,
  mb,
  print,
  progressBar,
  RefusedError,
  resolveJobId,
  resolveWorkerId,
  usage,
  UsageError,
  withClientOptions,
  type CommonOptions,
} from './common.ts';
import { registerDownloadCommand } from './commands-download.ts';
import { registerScheduleCommands } from './commands-schedules.ts';
import { formatJob, formatJobDetail, formatJobs, formatWorkers } from './format.ts';
import { sendProject } from './project.ts';
import { sha256OfFile } from '../util/hash.ts';
import { uploadJob } from './upload.ts';
import { watchJob } from './watch.ts';

export { EXIT, UsageError } from './common.ts';

/** A choice typed in any case, e.g. `--format jpeg`. */
const upperChoice = (choices: readonly string[]) => (value: string) => {
  const upper = value.toUpperCase();
  if (!choices.includes(upper)) throw new InvalidArgumentError(`expected one of ${choices.join(', ')}, got "${value}"`);
  return upper;
};

export function registerClientCommands(program: Command): void {
  registerSubmit(program);
  registerJobReads(program);
  registerJobActions(program);
  registerWorkerCommands(program);
  registerScheduleCommands(program);
  registerTokenCommands(program);
  registerDownloadCommand(program);
}

function registerSubmit(program: Command): void {
  const command = withClientOptions(program.command('submit <file>'))
    .description('upload a .blend and queue it for rendering')
    .option('--frames <range>', 'frames to render: N, A-B or A-B:STEP (default: the scene\'s range)')
    .option('--format <format>', `output format: ${outputFormats.join(', ')} (default: the scene's)`, upperChoice(outputFormats))
    .option('--resolution <percent>', 'resolution percentage override', integer(1, 1000))
    .option('--samples <n>', 'samples override', integer(1, 1_000_000))
    .option('--priority <n>', 'higher runs first (default 0)', integer(-1000, 1000))
    .option('--name <name>', 'job name (default: the file name)')
    .option('--hold', 'queue it paused after the scene is read, to review or edit settings first (then `resume`)')
    .option('--allow-scripts', 'let Python scripts inside the .blend run (off by default: only for files you trust)')
    .option('--tiles <tiles>', 'split frames into tiles on several workers: auto (default: when idle workers outnumber frames left), off, a count (4) or a grid (2x2)')
    .option('--force-tiles', 'split even when the scene uses effects that cross tile edges (denoising, glare); seams may show')
    .option('--no-denoising', "render with Cycles' denoising off (for workers whose Blender lacks the denoiser)")
    .option('--project-dir <dir>', 'send every file in this folder with the .blend (default: ask Blender here which files the .blend uses)')
    .option('--blend-only', 'send the .blend alone, without the files it uses')
    .option('--blender-path <path>', 'the Blender that finds the files the .blend uses (env ARCHENLAND_BLENDER; default: blender)')
    .addOption(
      new Option('--order <order>', 'frame order: interleaved (default: first, last, middle, then filling in, so a broken shot shows early) or sequential (frame order, for unbaked simulations)')
        .choices([...frameOrderSchema.options]),
    )
    .option('--max-workers <n>', 'at most this many workers render the job at once (default: no limit)', integer(1, 100_000))
    .option('--tags <tags>', "only workers with all these tags render it (comma-separated, e.g. gpu,room-2; a worker's tags setting)")
    .option('--blender <version>', "render with this Blender, e.g. 4.2 (default: the closest the workers have that is not older than the file's); only workers that have it take the frames")
    .option('--wait', 'follow the job until it ends, with progress bars; exit 0 only if it completed')
    .action(async (file: string, options: CommonOptions & Record<string, any>) => {
      if (!existsSync(file)) throw new UsageError(`no such file: ${file}`);
      if (options.hold && options.wait) throw new UsageError('--hold and --wait do not go together: a held job waits for `resume`');
      const fields: Record<string, string> = {};
      if (options.frames) fields.frames = formatFrameRange(usage(() => parseFrameRange(options.frames)));
      if (options.format) fields.fileFormat = options.format;
      if (options.resolution !== undefined) fields.resolutionPercentage = String(options.resolution);
      if (options.samples !== undefined) fields.samples = String(options.samples);
      if (options.priority !== undefined) fields.priority = String(options.priority);
      if (options.name) fields.name = options.name;
      if (options.hold) fields.hold = 'true';
      if (options.allowScripts) fields.allowScripts = 'true';
      if (options.tiles) fields.tiles = formatTiling(usage(() => parseTiling(options.tiles)));
      if (options.forceTiles) fields.forceTiles = 'true';
      if (options.denoising === false) fields.denoising = 'false';
      if (options.order) fields.order = options.order;
      if (options.maxWorkers !== undefined) fields.maxWorkers = String(options.maxWorkers);
      if (options.tags) {
        const tags = tagsSchema.safeParse(String(options.tags).split(',').map((tag) => tag.trim()).filter(Boolean));
        if (!tags.success) throw new UsageError(`--tags: ${describeIssues(tags.error)}`);
        fields.requiredTags = tags.data.join(',');
      }
      if (options.blender) {
        const version = blenderVersionSchema.safeParse(options.blender);
        if (!version.success) throw new UsageError(`--blender: ${describeIssues(version.error)}`);
        fields.blender = version.data;
      }
      const client = clientFrom(options);
      const sent = await sendProject(client, file, { projectDir: options.projectDir, blendOnly: options.blendOnly, blenderPath: options.blenderPath });
      if (sent.projectId) fields.project = sent.projectId;
      const uploadBar = progressBar('upload   {bar} {percentage}% | {value_mb}/{total_mb} MB');
      let job: Job;
      try {
        job = await uploadJob(client, file, fields, (done, total) => {
          if (!uploadBar.isActive) uploadBar.start(total, 0, { value_mb: '0.0', total_mb: mb(total) });
          uploadBar.update(done, { value_mb: mb(done), total_mb: mb(total) });
        });
      } finally {
        uploadBar.stop();
      }
      const transfer = { uploadedBytes: sent.uploadedBytes + (await stat(file)).size, reusedBytes: sent.reusedBytes };
      const summary = `submitted job ${job.id} (${job.name})${sent.files ? `; ${sent.files} project files, ${mb(transfer.reusedBytes)} MB of them already on the server` : ''}`;
      if (!options.wait) return print(options.json, { ...job, ...transfer }, summary);
      if (!options.json) console.log(`${summary}; rendering…`);
      const renderBar = progressBar('frames   {bar} {value}/{total} | {state}');
      let final: Job;
      try {
        final = await watchJob(client, job.id, (update) => {
          if (update.counts.total === 0) return;
          if (!renderBar.isActive) renderBar.start(update.counts.total, 0, { state: update.state });
          renderBar.setTotal(update.counts.total);
          renderBar.update(update.counts.done, { state: update.state });
        });
      } finally {
        renderBar.stop();
      }
      print(options.json, { ...final, ...transfer }, formatJob(final));
      if (final.state !== 'completed') process.exitCode = EXIT.failed;
    });
  examples(command, [
    'archenland submit shot010.blend',
    'archenland submit shot010.blend --frames 1-250 --wait',
    'archenland submit shot010.blend --frames 1-250:5 --format JPEG --resolution 50 --priority 10',
    'archenland submit shot010.blend --hold   # review the probed settings, `edit`, then `resume`',
    'archenland submit shot010.blend --wait --json | jq .state',
    'archenland submit poster.blend --tiles 2x2 --wait   # one still, four workers',
    'archenland submit shots/010/main.blend --project-dir .   # no Blender here: send the whole project folder',
    'archenland submit fluid.blend --order sequential   # an unbaked simulation needs its frames in order',
    'archenland submit shot010.blend --tags gpu --max-workers 4   # GPU machines only, at most four at once',
  ]);
}

function registerJobReads(program: Command): void {
  const jobs = withClientOptions(program.command('jobs'))
    .description('list jobs, oldest first')
    .addOption(new Option('--state <state>', 'only jobs in this state').choices([...jobStates]))
    .action(async (options: CommonOptions & { state?: string }) => {
      const all = await clientFrom(options).get<Job[]>(apiPath('listJobs'));
      const shown = options.state ? all.filter((j) => j.state === options.state) : all;
      print(options.json, shown, formatJobs(shown));
    });
  examples(jobs, ['archenland jobs', 'archenland jobs --state failed', "archenland jobs --json | jq -r '.[] | select(.state==\"completed\") | .id'"]);

  const job = withClientOptions(program.command('job <id>'))
    .description('show one job: settings, frame counts, time left, failed frames (--json: with every frame)')
    .action(async (typed: string, options: CommonOptions) => {
      const client = clientFrom(options);
      const detail = await client.get<JobDetail>(apiPath('getJob', { id: await resolveJobId(client, typed) }));
      print(options.json, detail, formatJobDetail(detail));
    });
  examples(job, ['archenland job 3f2a9c', 'archenland job 3f2a9c41d07be815 --json | jq .counts']);

  const log = withClientOptions(program.command('log <id> <frame>'))
    .description("print Blender's output for one frame (and its error if it failed)")
    .action(async (typed: string, frame: string, options: CommonOptions) => {
      const number = usage(() => integer()(frame));
      const client = clientFrom(options);
      const entry = await client.get<FrameLog>(apiPath('frameLog', { id: await resolveJobId(client, typed), frame: number }));
      print(options.json, entry, `${entry.log.trimEnd()}${entry.error ? `\nerror: ${entry.error}` : ''}`);
    });
  examples(log, ['archenland log 3f2a9c 12', 'archenland log 3f2a9c 12 --json | jq -r .error']);
}

/** One command per job action of the API: POST /api/jobs/:id/<action>. */
function jobAction(program: Command, action: 'cancel' | 'pause' | 'resume' | 'retry', description: string, done: string, sample: string[]): void {
  const command = withClientOptions(program.command(`${action} <id>`))
    .description(description)
    .action(async (typed: string, options: CommonOptions) => {
      const client = clientFrom(options);
      const job = await client.post<Job>(apiPath(`${action}Job`, { id: await resolveJobId(client, typed) }));
      print(options.json, job, `${done} job ${job.id} (${job.name}): now ${job.state}`);
    });
  examples(command, sample);
}

function registerJobActions(program: Command): void {
  jobAction(program, 'cancel', 'cancel a job: frames under way stop, nothing more is rendered', 'cancelled', ['archenland cancel 3f2a9c']);
  jobAction(program, 'pause', 'pause a job: frames under way finish, no new ones start', 'paused', ['archenland pause 3f2a9c']);
  jobAction(program, 'resume', 'resume a paused or held job', 'resumed', ['archenland resume 3f2a9c']);
  jobAction(program, 'retry', "queue a job's failed frames again (a failed job renders again)", 'retrying', ['archenland retry 3f2a9c', 'archenland retry 3f2a9c && archenland job 3f2a9c']);

  const addFiles = withClientOptions(program.command('add-files <id> <file>'))
    .description("add the files a held job's project lacks: give its .blend again, with its files now in place; only files the server lacks are sent, and the job's scene is read again")
    .option('--project-dir <dir>', 'send every file in this folder (default: ask Blender here which files the .blend uses)')
    .option('--blender-path <path>', 'the Blender that finds the files the .blend uses (env ARCHENLAND_BLENDER; default: blender)')
    .action(async (typed: string, file: string, options: CommonOptions & { projectDir?: string; blenderPath?: string }) => {
      if (!existsSync(file)) throw new UsageError(`no such file: ${file}`);
      const client = clientFrom(options);
      const held = await client.get<Job>(apiPath('getJob', { id: await resolveJobId(client, typed) }));
      if ((await sha256OfFile(file)) !== held.blendSha256) {
        throw new UsageError(`${file} is not the .blend of job ${held.id}: a changed .blend is a new job (archenland submit)`);
      }
      const sent = await sendProject(client, file, { projectDir: options.projectDir, blenderPath: options.blenderPath });
      if (!sent.projectId) throw new UsageError('found no files to add: the .blend uses none that are on this machine (--project-dir DIR sends a folder)');
      const job = await client.put<Job>(apiPath('replaceJobProject', { id: held.id }), { project: sent.projectId } satisfies JobProject);
      const summary = `job ${job.id} (${job.name}): ${sent.files} project files, ${mb(sent.uploadedBytes)} MB sent; reading its scene again`;
      print(options.json, { ...job, uploadedBytes: sent.uploadedBytes, reusedBytes: sent.reusedBytes }, summary);
    });
  examples(addFiles, ['archenland add-files 3f2a9c shot.blend', 'archenland add-files 3f2a9c shot.blend --project-dir ~/projects/shot && archenland job 3f2a9c']);

  const del = withClientOptions(program.command('delete <id>'))
    .description('delete a job with its frames and video (a running job is cancelled first); asks first')
    .option('-y, --yes', 'do not ask for confirmation (for scripts)')
    .action(async (typed: string, options: CommonOptions & { yes?: boolean }) => {
      const client = clientFrom(options);
      const id = await resolveJobId(client, typed);
      if (!options.yes) {
        const job = await client.get<Job>(apiPath('getJob', { id }));
        const question = `Delete job ${job.id} "${job.name}" (${job.state}, ${job.counts.done} frames rendered) with all its files?`;
        if (!(await confirm(question))) throw new RefusedError('not deleted (answer y to confirm, or pass --yes)');
      }
      await client.delete(apiPath('deleteJob', { id }));
      print(options.json, { id, deleted: true }, `deleted job ${id}`);
    });
  examples(del, ['archenland delete 3f2a9c', 'archenland delete 3f2a9c --yes']);

  const priority = withClientOptions(program.command('priority <id> <n>'))
    .description('set a job\'s priority, -1000..1000: higher runs first (default 0)')
    .action(async (typed: string, n: string, options: CommonOptions) => {
      const value = usage(() => integer(-1000, 1000)(n));
      const client = clientFrom(options);
      const job = await client.patch<Job>(apiPath('patchJob', { id: await resolveJobId(client, typed) }), { priority: value } satisfies JobPatch);
      print(options.json, job, `job ${job.id} (${job.name}): priority ${job.priority}`);
    });
  examples(priority, ['archenland priority 3f2a9c 10', 'archenland priority 3f2a9c -5']);

  const edit = withClientOptions(program.command('edit <id>'))
    .description('rename or re-prioritise a job; change frames, format, resolution or samples before its first frame is handed out (e.g. after submit --hold)')
    .option('--name <name>', 'new name')
    .option('--priority <n>', 'new priority', integer(-1000, 1000))
    .option('--frames <range>', 'frames to render: N, A-B or A-B:STEP')
    .option('--format <format>', `output format: ${outputFormats.join(', ')}`, upperChoice(outputFormats))
    .option('--resolution <percent|scene>', 'resolution percentage, or "scene" for the file\'s own')
    .option('--samples <n|scene>', 'samples, or "scene" for the file\'s own')
    .option('--tiles <tiles>', 'auto, off, a count (4) or a grid (2x2)')
    .option('--force-tiles <yes|no>', 'split even when the scene has effects that cross tile edges', booleanWord)
    .option('--max-workers <n|none>', 'at most this many workers at once (any time), or "none" for no limit')
    .action(async (typed: string, options: CommonOptions & Record<string, any>) => {
      const patch: Record<string, unknown> = {};
      if (options.name !== undefined) patch.name = options.name;
      if (options.priority !== undefined) patch.priority = options.priority;
      if (options.frames !== undefined) patch.frames = usage(() => parseFrameRange(options.frames));
      if (options.format !== undefined) patch.fileFormat = options.format;
      if (options.resolution !== undefined) patch.resolutionPercentage = options.resolution === 'scene' ? null : usage(() => integer(1, 1000)(options.resolution));
      if (options.samples !== undefined) patch.samples = options.samples === 'scene' ? null : usage(() => integer(1, 1_000_000)(options.samples));
      if (options.tiles !== undefined) patch.tiles = usage(() => parseTiling(options.tiles));
      if (options.forceTiles !== undefined) patch.forceTiles = options.forceTiles;
      if (options.maxWorkers !== undefined) patch.maxWorkers = options.maxWorkers === 'none' ? null : usage(() => integer(1, 100_000)(options.maxWorkers));
      if (Object.keys(patch).length === 0) throw new UsageError('nothing to change: give --name, --priority, --frames, --format, --resolution, --samples, --tiles or --max-workers');
      const checked = jobPatchSchema.safeParse(patch);
      if (!checked.success) throw new UsageError(describeIssues(checked.error));
      const client = clientFrom(options);
      const job = await client.patch<Job>(apiPath('patchJob', { id: await resolveJobId(client, typed) }), patch);
      print(options.json, job, formatJob(job));
    });
  examples(edit, ['archenland edit 3f2a9c --name "shot 010 final"', 'archenland edit 3f2a9c --frames 1-100 --samples 64 && archenland resume 3f2a9c']);
}

function booleanWord(value: string): boolean {
  if (['yes', 'true', 'on'].includes(value.toLowerCase())) return true;
  if (['no', 'false', 'off'].includes(value.toLowerCase())) return false;
  throw new InvalidArgumentError('expected yes or no');
}

function registerTokenCommands(program: Command): void {
  const token = program.command('token').description('manage access tokens: user tokens (API, CLI, web UI) and worker tokens (render workers only)');
  const create = withClientOptions(token.command('create'))
    .description('create a token; its secret is printed once (store it now: the server keeps only a digest)')
    .addOption(new Option('--role <role>', 'user: the API, CLI and web UI; worker: the worker protocol only').choices(['user', 'worker']).makeOptionMandatory())
    .option('--name <name>', 'a name to recognise it by, e.g. the machine it is for')
    .action(async (options: CommonOptions & { role: 'user' | 'worker'; name?: string }) => {
      const created = await clientFrom(options).post<CreatedToken>(apiPath('createToken'), { role: options.role, ...(options.name ? { name: options.name } : {}) });
      print(options.json, created, `${created.role} token ${created.id} (${created.name}):\n${created.token}`);
    });
  examples(create, ['archenland token create --role worker --name render-07 > worker-token', 'archenland token create --role user --name alice --json']);

  const list = withClientOptions(token.command('list'))
    .description('list tokens: id, role, name and when each was made (never the secrets)')
    .action(async (options: CommonOptions) => {
      const tokens = await clientFrom(options).get<TokenInfo[]>(apiPath('listTokens'));
      print(options.json, tokens, tokens.map((t) => `${t.id}  ${t.role.padEnd(6)}  ${t.createdAt}  ${t.name}`).join('\n') || 'no tokens');
    });
  examples(list, ['archenland token list']);

  const revoke = withClientOptions(token.command('revoke <id>'))
    .description('revoke a token: its browser sessions end and workers using it are disconnected')
    .action(async (id: string, options: CommonOptions) => {
      await clientFrom(options).delete(apiPath('revokeToken', { id }));
      print(options.json, { revoked: id }, `token ${id} revoked`);
    });
  examples(revoke, ['archenland token revoke 3f9c0a1b22de']);
}

function registerWorkerCommands(program: Command): void {
  const workers = withClientOptions(program.command('workers'))
    .description('list workers: state, current frame, frames rendered, average frame time')
    .action(async (options: CommonOptions) => {
      const list = await clientFrom(options).get<Worker[]>(apiPath('listWorkers'));
      print(options.json, list, formatWorkers(list));
    });
  examples(workers, ['archenland workers', "archenland workers --json | jq '.[] | select(.state==\"offline\") | .name'"]);

  const modes = {
    enable: ['let a worker take frames again', 'enabled'],
    drain: ['let a worker finish its current frame, then take no more (for maintenance)', 'draining'],
    disable: ['take a worker out now: its current frame goes back to the queue', 'disabled'],
  } as const;
  for (const [mode, [description, done]] of Object.entries(modes) as Array<[keyof typeof modes, (typeof modes)[keyof typeof modes]]>) {
    const command = withClientOptions(program.command(`worker-${mode} <worker>`))
      .description(`${description}; <worker> is a worker id, id prefix or name`)
      .action(async (typed: string, options: CommonOptions) => {
        const client = clientFrom(options);
        const worker = await client.post<Worker>(apiPath(`${mode}Worker`, { id: await resolveWorkerId(client, typed) }));
        print(options.json, worker, `worker ${worker.name} (${worker.id}): ${done}, ${worker.state}`);
      });
    examples(command, [`archenland worker-${mode} render-07`, `archenland worker-${mode} 9c41d07b`]);
  }

  const tags = withClientOptions(program.command('worker-tags <worker> [tags]'))
    .description("set the tags a worker takes jobs by, on the server (comma-separated; they survive restarts and replace the worker's own tags setting); no tags: show them")
    .option('--reset', "go back to the worker's own tags setting")
    .action(async (typed: string, list: string | undefined, options: CommonOptions & { reset?: boolean }) => {
      if (options.reset && list !== undefined) throw new UsageError('give tags or --reset, not both');
      const client = clientFrom(options);
      const id = await resolveWorkerId(client, typed);
      let worker: Worker;
      if (options.reset || list !== undefined) {
        const parsed = list === undefined ? null : tagsSchema.safeParse(list.split(',').map((tag) => tag.trim()).filter(Boolean));
        if (parsed && !parsed.success) throw new UsageError(`tags: ${describeIssues(parsed.error)}`);
        worker = await client.put<Worker>(apiPath('setWorkerTags', { id }), { tags: parsed ? parsed.data : null });
      } else {
        worker = (await client.get<Worker[]>(apiPath('listWorkers'))).find((w) => w.id === id)!;
      }
      const shown = worker.tags.length > 0 ? worker.tags.join(', ') : 'none';
      print(options.json, worker, `worker ${worker.name} (${worker.id}): tags ${shown} (${worker.tagsSetOnServer ? 'set on the server' : 'its own setting'})`);
    });
  examples(tags, ['archenland worker-tags render-07 gpu,room-2', 'archenland worker-tags render-07', 'archenland worker-tags render-07 --reset']);
}
