import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { apiPath, type JobDetail } from '../protocol/index.ts';
import { ApiError, type DownloadResult } from './client.ts';
import { clientFrom, examples, mb, print, progressBar, resolveJobId, UsageError, withClientOptions, type CommonOptions } from './common.ts';

interface DownloadOptions extends CommonOptions {
  frames?: boolean;
  video?: boolean;
  zip?: boolean;
  output?: string;
}

/**
 * `download <id>`: the video (default), every rendered frame, or a zip of them, with a
 * progress bar on stderr. Files are written through `.partial` names, so a broken-off
 * download never looks complete.
 */
export function registerDownloadCommand(program: Command): void {
  const command = withClientOptions(program.command('download <id>'))
    .description("download a job's video (default), its frames, or a zip of its frames")
    .option('--video', 'the H.264 MP4 (the default): <id>.mp4')
    .option('--frames', 'every rendered frame, as frame_0001.png … (into <dir>/<id>-frames unless -o is given)')
    .option('--zip', 'every rendered frame in one zip: <id>-frames.zip')
    .option('-o, --output <dir>', 'folder to save into, created if missing (default: the current folder)')
    .action(async (typed: string, options: DownloadOptions) => {
      const kinds = (['video', 'frames', 'zip'] as const).filter((k) => options[k]);
      if (kinds.length > 1) throw new UsageError(`choose one of --video, --frames and --zip (got ${kinds.map((k) => `--${k}`).join(' and ')})`);
      const kind = kinds[0] ?? 'video';
      const client = clientFrom(options);
      const id = await resolveJobId(client, typed);

      let files: DownloadResult[];
      if (kind === 'frames') {
        const job = await client.get<JobDetail>(apiPath('getJob', { id }));
        const done = job.frameList.filter((f) => f.state === 'done');
        if (done.length === 0) throw new ApiError(`job ${id} has no rendered frames yet (${job.state})`, 404);
        const dir = options.output ?? `${id}-frames`;
        mkdirSync(dir, { recursive: true });
        const bar = progressBar('frames   {bar} {value}/{total} | {size} MB');
        bar.start(done.length, 0, { size: '0.0' });
        files = [];
        let bytes = 0;
        try {
          for (const frame of done) {
            const file = await client.download(apiPath('frameFile', { id, frame: frame.number }), dir, `frame_${frame.number}`, () => {});
            files.push(file);
            bytes += file.bytes;
            bar.increment(1, { size: mb(bytes) });
          }
        } finally {
          bar.stop();
        }
      } else {
        const dir = options.output ?? '.';
        mkdirSync(dir, { recursive: true });
        const route = kind === 'video' ? apiPath('video', { id }) : apiPath('framesZip', { id });
        const fallback = kind === 'video' ? `${id}.mp4` : `${id}-frames.zip`;
        files = [await downloadWithBar(client, route, dir, fallback)];
      }

      const bytes = files.reduce((sum, f) => sum + f.bytes, 0);
      const shown = files.map((f) => ({ path: path.resolve(f.file), bytes: f.bytes }));
      const text =
        files.length === 1
          ? `saved ${shown[0]!.path} (${mb(bytes)} MB)`
          : `saved ${files.length} frames to ${path.resolve(path.dirname(files[0]!.file))} (${mb(bytes)} MB)`;
      print(options.json, { job: id, kind, files: shown, bytes }, text);
    });
  examples(command, [
    'archenland download 3f2a9c                 # ./3f2a9c41d07be815.mp4',
    'archenland download 3f2a9c --frames -o shot010/',
    'archenland download 3f2a9c --zip -o ~/Downloads',
    'archenland download 3f2a9c --json | jq -r .files[0].path',
  ]);
}

async function downloadWithBar(client: ReturnType<typeof clientFrom>, route: string, dir: string, fallback: string): Promise<DownloadResult> {
  // Videos carry Content-Length; the zip is streamed as it is built, so only bytes so far are known.
  const known = progressBar('download {bar} {percentage}% | {value_mb}/{total_mb} MB');
  const unknown = progressBar('download {value_mb} MB');
  let bar: ReturnType<typeof progressBar> | undefined;
  try {
    return await client.download(route, dir, fallback, (received, total) => {
      if (!bar) {
        bar = total === null ? unknown : known;
        bar.start(total ?? 0, 0, { value_mb: '0.0', total_mb: total === null ? '?' : mb(total) });
      }
      bar.update(total === null ? 0 : received, { value_mb: mb(received), total_mb: total === null ? '?' : mb(total) });
    });
  } finally {
    bar?.stop();
  }
}
