import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../util/log.ts';
import type { FrameUpload, UploadAnswer } from './frame-uploader.ts';

const MAX_BACKOFF_MS = 30_000;

/** Answers after which sending the same bytes again cannot succeed. */
const isPermanent = (status: number | undefined) =>
  status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429;

/**
 * Rendered frames waiting to reach the server. Each is recorded on disk beside its file
 * before the first try, so a frame finished while the server is unreachable, or before
 * the worker itself restarts, is uploaded when the server is back rather than lost.
 * Network errors and 5xx answers (including 507, server disk full) are retried with
 * capped backoff for as long as it takes; a refusal (4xx) is final.
 */
export class UploadQueue {
  private chain: Promise<void> = Promise.resolve();
  private waiting = 0;
  private readonly queued = new Map<string, { jobId: string; frame: number; tile?: number }>();

  constructor(
    private readonly send: (upload: FrameUpload) => Promise<UploadAnswer>,
    private readonly onRefused: (upload: FrameUpload, error: Error) => void,
    private readonly log: Logger,
  ) {}

  static sidecarOf(file: string): string {
    return `${file}.pending.json`;
  }

  /** Uploads left over from an earlier run of this worker: records in each job's folder or a frame's folder in it. */
  async recover(outputRoot: string): Promise<number> {
    if (!existsSync(outputRoot)) return 0;
    let recovered = 0;
    for (const jobDir of await readdir(outputRoot)) {
      const entries = await readdir(path.join(outputRoot, jobDir), { recursive: true }).catch(() => []);
      for (const relative of entries.filter((name) => name.endsWith('.pending.json') && name.split(path.sep).length <= 2)) {
        const record = path.join(outputRoot, jobDir, relative);
        try {
          const upload = JSON.parse(await readFile(record, 'utf8')) as FrameUpload;
          if (existsSync(upload.file)) {
            this.enqueue(upload, false);
            recovered++;
          } else await rm(record, { force: true });
        } catch (error) {
          this.log.warn({ err: error, file: relative }, 'ignored an unreadable pending upload record');
        }
      }
    }
    return recovered;
  }

  get pending(): number {
    return this.waiting;
  }

  /** The frames waiting here, told to the server on (re)connect so it does not hand them out again. */
  holding(): Array<{ jobId: string; frame: number; tile?: number }> {
    return [...this.queued.values()];
  }

  /** Resolves once every upload queued so far has been delivered or refused. */
  drained(): Promise<void> {
    return this.chain;
  }

  async add(upload: FrameUpload): Promise<void> {
    await mkdir(path.dirname(upload.file), { recursive: true });
    await writeFile(UploadQueue.sidecarOf(upload.file), JSON.stringify(upload));
    this.enqueue(upload, true);
  }

  private enqueue(upload: FrameUpload, fresh: boolean): void {
    const key = `${upload.jobId}#${upload.frame}/${upload.tile ?? ''}`;
    this.waiting++;
    this.queued.set(key, { jobId: upload.jobId, frame: upload.frame, tile: upload.tile });
    this.chain = this.chain
      .then(() => this.deliver(upload, fresh))
      .finally(() => {
        this.waiting--;
        this.queued.delete(key);
      });
  }

  private async deliver(upload: FrameUpload, fresh: boolean): Promise<void> {
    const log = this.log.child({ jobId: upload.jobId, frame: upload.frame, tile: upload.tile });
    for (let attempt = 0; ; attempt++) {
      try {
        const answer = await this.send(upload);
        log.info({ accepted: answer.accepted, reason: answer.reason, recovered: !fresh }, 'frame uploaded');
        break;
      } catch (error) {
        const status = (error as { statusCode?: number }).statusCode;
        if (isPermanent(status)) {
          log.error({ err: error }, 'the server refused the frame');
          this.onRefused(upload, error as Error);
          break;
        }
        const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
        log.warn({ err: (error as Error).message, retryInMs: Math.round(delay) }, 'upload failed; will retry');
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
    await rm(upload.file, { force: true });
    await rm(UploadQueue.sidecarOf(upload.file), { force: true });
    // The frame's own folder goes with its passes; it holds nothing else.
    if (upload.folder) await rm(upload.folder, { recursive: true, force: true });
  }
}

