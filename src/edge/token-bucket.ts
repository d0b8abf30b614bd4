/**
 * The arithmetic of a shared byte-rate limit (no I/O, no timers): a token bucket that may
 * go into debt. Each sender takes the bytes it is about to send and is told how long to
 * wait first. Because a taker that finds the bucket in debt waits until that debt is paid,
 * senders are served in the order they asked, and however many connections share one
 * bucket, together they never exceed `bytesPerSecond` (beyond the first `burstBytes`).
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly perMs: number;

  constructor(
    readonly bytesPerSecond: number,
    readonly burstBytes: number,
    /** The clock's reading now, in ms (performance.now() in production, any number in tests). */
    nowMs: number,
  ) {
    if (!(bytesPerSecond > 0)) throw new RangeError('a token bucket needs a positive rate');
    this.perMs = bytesPerSecond / 1000;
    this.tokens = burstBytes;
    this.last = nowMs;
  }

  /** Takes `bytes` from the bucket at `nowMs`; returns how many ms to wait before sending them (0: at once). */
  take(bytes: number, nowMs: number): number {
    // A clock read earlier than the last one (two takers racing) adds nothing, and never removes.
    const elapsed = Math.max(0, nowMs - this.last);
    this.last = Math.max(this.last, nowMs);
    this.tokens = Math.min(this.burstBytes, this.tokens + elapsed * this.perMs) - bytes;
    return this.tokens >= 0 ? 0 : -this.tokens / this.perMs;
  }
}

/** `serve_limit_mbps` in bytes per second: megabits (10^6 bits) as network links are rated. */
export function mbpsToBytesPerSecond(mbps: number): number {
  return (mbps * 1_000_000) / 8;
}
