import type { FarmChange, Job, JobState } from '../protocol/index.ts';
import type { Logger } from '../util/log.ts';
import type { Farm } from '../farm/index.ts';

/**
 * Follows each job's state through the farm's events and calls back on real transitions.
 * The farm re-publishes a job on every change (a rename of a finished job included), so
 * "the job is completed" is not "the job just completed": this tells them apart. Jobs that
 * existed before the watch started are read once so their old state is known.
 */
export function watchJobStates(farm: Farm, onChange: (job: Job, previous: JobState | undefined) => void): () => void {
  const states = new Map<string, JobState>();
  const listener = (change: FarmChange) => {
    if (change.type === 'job_removed') {
      states.delete(change.jobId);
      return;
    }
    if (change.type !== 'job') return;
    const previous = states.get(change.job.id);
    states.set(change.job.id, change.job.state);
    if (previous !== change.job.state) onChange(change.job, previous);
  };
  farm.on('event', listener);
  farm.listJobs().then(
    (jobs) => {
      for (const job of jobs) if (!states.has(job.id)) states.set(job.id, job.state);
    },
    () => {}, // the store is closing; events still drive the map
  );
  return () => farm.off('event', listener);
}

export type WebhookEvent = 'job.completed' | 'job.failed';

export interface WebhookPayload {
  event: WebhookEvent;
  job: Job;
}

export interface WebhookOptions {
  /** Per attempt. */
  timeoutMs?: number;
  /** Waits before the 2nd, 3rd, … attempt; its length is the number of retries. */
  retryDelaysMs?: number[];
}

export const WEBHOOK_DEFAULTS: Required<WebhookOptions> = { timeoutMs: 5_000, retryDelaysMs: [1_000, 3_000] };

/**
 * When `url` is set, POSTs `{event, job}` as JSON whenever a job completes or fails. A
 * delivery runs in the background (never in the farm's way) with a timeout per attempt and
 * a couple of retries on network errors, 408, 429 and 5xx; a delivery that still fails is
 * logged and dropped. Deliveries are the farm's background work, so a graceful stop waits
 * for the ones under way (at most about 20 s with the defaults). Returns a stop function.
 */
export function startWebhookNotifier(farm: Farm, url: string | undefined, log: Logger, options: WebhookOptions = {}): () => void {
  if (!url) return () => {};
  const settings = { ...WEBHOOK_DEFAULTS, ...options };
  const target = redact(url);
  log.info({ url: target }, 'webhook notifications on');
  return watchJobStates(farm, (job) => {
    if (job.state !== 'completed' && job.state !== 'failed') return;
    const payload: WebhookPayload = { event: `job.${job.state}`, job };
    farm.background(deliver(url, payload, settings, log.child({ url: target, jobId: job.id, event: payload.event })));
  });
}

async function deliver(url: string, payload: WebhookPayload, options: Required<WebhookOptions>, log: Logger): Promise<void> {
  const body = JSON.stringify(payload);
  // fetch refuses credentials inside a URL: send them as HTTP basic authentication instead.
  const target = new URL(url);
  const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'archenland-webhook/1', 'x-archenland-event': payload.event };
  if (target.username || target.password) {
    const credentials = `${decodeURIComponent(target.username)}:${decodeURIComponent(target.password)}`;
    headers.authorization = `Basic ${Buffer.from(credentials).toString('base64')}`;
    target.username = '';
    target.password = '';
  }
  const attempts = options.retryDelaysMs.length + 1;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    let problem: string;
    try {
      const response = await fetch(target, {
        method: 'POST',
        headers,
        body,
        signal: AbortSignal.timeout(options.timeoutMs),
        redirect: 'follow',
      });
      await response.body?.cancel().catch(() => {});
      if (response.ok) {
        log.debug({ attempt, status: response.status }, 'webhook delivered');
        return;
      }
      problem = `HTTP ${response.status}`;
      if (!retryable(response.status)) {
        log.warn({ attempt, status: response.status }, 'webhook refused by the receiver; not retrying');
        return;
      }
    } catch (error) {
      const err = error as Error & { cause?: Error };
      problem = err.name === 'TimeoutError' ? `no answer within ${options.timeoutMs} ms` : (err.cause?.message ?? err.message);
      problem = problem.replaceAll(target.href, redact(url)); // the query may hold a secret
    }
    if (attempt === attempts) {
      log.warn({ attempts, problem }, 'webhook delivery failed; giving up');
      return;
    }
    log.info({ attempt, problem }, 'webhook delivery failed; retrying');
    await new Promise((resolve) => setTimeout(resolve, options.retryDelaysMs[attempt - 1]));
  }
}

const retryable = (status: number) => status === 408 || status === 429 || status >= 500;

/** The URL for logs, without credentials or query (which may hold a secret). */
function redact(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}
