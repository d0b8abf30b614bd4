/** Early logs held at most; a farm has at most one per worker in the normal course. */
const MAX_EARLY_LOGS = 5000;

export interface EarlyLog {
  jobId: string;
  frame: number;
  workerId: string;
  log: string;
}

const keyOf = (jobId: string, frame: number, workerId: string) => `${jobId}#${frame}#${workerId}`;

/**
 * Logs of whole frames that arrived (over the WebSocket) before their upload (over HTTP):
 * held until the upload, then written with the frame's result in one statement.
 */
export class EarlyLogs {
  private readonly logs = new Map<string, EarlyLog>();

  /** `evict`: an upload that never came (a worker lost on the way); its log is written out rather than held. */
  constructor(private readonly evict: (log: EarlyLog) => void) {}

  keep(entry: EarlyLog): void {
    if (this.logs.size >= MAX_EARLY_LOGS) {
      const [[key, oldest]] = this.logs;
      this.logs.delete(key);
      this.evict(oldest);
    }
    this.logs.set(keyOf(entry.jobId, entry.frame, entry.workerId), entry);
  }

  take(jobId: string, frame: number, workerId: string): string | undefined {
    const key = keyOf(jobId, frame, workerId);
    const early = this.logs.get(key);
    this.logs.delete(key);
    return early?.log;
  }

  dropJob(jobId: string): void {
    for (const [key, early] of this.logs) if (early.jobId === jobId) this.logs.delete(key);
  }
}
