import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { sessionEventSchema, type SessionEvent } from '../../protocol/index.ts';

/** Progress of one frame, from Blender's "Fra:" status lines. */
export type FrameProgress = { frame: number; done: number; total: number; percent: number };

// Blender prints "Fra:N Mem:… | Time:… | … | <status>"; the status is the last
// "|" field. Cycles: "Sample 33/128". EEVEE: "Rendering 26 / 64 samples".
const FRAME_PREFIX = /^Fra:(-?\d+)\s/;
// Anchored at both ends so an object called "Sample 3/4 cube" in a
// "Synchronizing object | <name>" line is not taken for progress. Older
// Cycles appended ", Denoised …" etc. after a comma.
const CYCLES_STATUS = /^Sample (\d+)\/(\d+)(?:,.*)?$/;
const EEVEE_STATUS = /^Rendering (\d+) \/ (\d+) samples$/;

export function parseProgressLine(line: string): FrameProgress | null {
  const frameMatch = FRAME_PREFIX.exec(line);
  if (!frameMatch) return null;
  const status = line.slice(line.lastIndexOf('|') + 1).trim();
  const samples = CYCLES_STATUS.exec(status) ?? EEVEE_STATUS.exec(status);
  if (!samples) return null;
  const done = Number(samples[1]);
  const total = Number(samples[2]);
  if (total <= 0 || done > total) return null;
  return { frame: Number(frameMatch[1]), done, total, percent: (done / total) * 100 };
}

export type { SessionEvent };

/**
 * Our Blender scripts reply on file descriptor 3 (a pipe of its own), never on
 * stdout: Blender prints names the .blend controls there, and names can contain
 * newlines, so any stdout line could be forged by the scene.
 */
export const EVENT_FD = 3;
/** Carries the per-process nonce to the script; the script removes it once read. */
export const EVENT_NONCE_VARIABLE = 'ARCHENLAND_EVENT_NONCE';
/** session.py prints "<prefix><nonce> <seq>" on stdout and stderr right before reply <seq>. */
export const FENCE_PREFIX = '@@ARCHENLAND-FENCE ';

/** A fresh secret for one Blender process: it proves a reply or fence came from our script. */
export function newEventNonce(): string {
  return randomBytes(16).toString('hex');
}

const envelopeSchema = z.object({ nonce: z.string(), seq: z.number().int().positive() });

export type SequencedEvent = { seq: number; event: SessionEvent };

/**
 * One line of the event pipe, `{"nonce": …, "seq": N, "event": …, …}`; null when it
 * is malformed, of an unknown kind, or carries another nonce.
 */
export function parseSessionEvent(line: string, nonce: string): SequencedEvent | null {
  const json = parseJson(line);
  const envelope = envelopeSchema.safeParse(json);
  if (!envelope.success || envelope.data.nonce !== nonce) return null;
  const event = sessionEventSchema.safeParse(json);
  return event.success ? { seq: envelope.data.seq, event: event.data } : null;
}

/** The JSON value of a line, or undefined when it is not JSON. */
export function parseJson(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}

/**
 * A fence line with this nonce: its sequence number and any text Blender left
 * unterminated on the line before it (a log line of its own). Null for every other line.
 */
export function parseFenceLine(line: string, nonce: string): { seq: number; before: string } | null {
  const marker = FENCE_PREFIX + nonce + ' ';
  const at = line.lastIndexOf(marker);
  if (at < 0) return null;
  const seq = line.slice(at + marker.length);
  if (!/^[1-9]\d{0,15}$/.test(seq)) return null;
  return { seq: Number(seq), before: line.slice(0, at) };
}

export type OutputStream = 'stdout' | 'stderr';
const OUTPUT_STREAMS: readonly OutputStream[] = ['stdout', 'stderr'];

type Held = { line: string } | { fence: number };

export type EventOrderHandlers = {
  /** A line of Blender's output (never a fence), in its order relative to the events. */
  line: (stream: OutputStream, line: string) => void;
  event: (event: SessionEvent) => void;
  /** A line on the event pipe that is not a valid, new event of this session. */
  rejected: (line: string, reason: string) => void;
};

/**
 * Puts the replies from the event pipe back in order with Blender's stdout and
 * stderr, which arrive on other pipes at their own pace. Reply N is handed out
 * once it and its fence on both output streams have been read: every line
 * printed before it has been handed out by then, and lines printed after it are
 * held until it has been.
 */
export class EventOrder {
  private delivered = 0;
  private readonly events = new Map<number, SessionEvent>();
  private readonly fencesSeen: Record<OutputStream, number> = { stdout: 0, stderr: 0 };
  private readonly held: Record<OutputStream, Held[]> = { stdout: [], stderr: [] };

  constructor(
    private readonly nonce: string,
    private readonly handlers: EventOrderHandlers,
  ) {}

  addEventLine(line: string): void {
    const parsed = parseSessionEvent(line, this.nonce);
    if (!parsed) {
      this.handlers.rejected(line, 'not an event of this session');
    } else if (parsed.seq <= this.delivered || this.events.has(parsed.seq)) {
      this.handlers.rejected(line, `event number ${parsed.seq} was already received`);
    } else {
      this.events.set(parsed.seq, parsed.event);
      this.pump();
    }
  }

  addOutputLine(stream: OutputStream, line: string): void {
    const fence = parseFenceLine(line, this.nonce);
    // Fences on one stream come in order; anything else is only text that looks like one.
    if (fence && fence.seq === this.fencesSeen[stream] + 1) {
      if (fence.before !== '') this.held[stream].push({ line: fence.before });
      this.fencesSeen[stream] = fence.seq;
      this.held[stream].push({ fence: fence.seq });
    } else {
      this.held[stream].push({ line });
    }
    this.pump();
  }

  /** At exit: hands out the lines still held behind a fence whose event never came. */
  flush(): void {
    for (const stream of OUTPUT_STREAMS) {
      for (const item of this.held[stream].splice(0)) {
        if ('line' in item) this.handlers.line(stream, item.line);
      }
    }
  }

  private pump(): void {
    for (;;) {
      for (const stream of OUTPUT_STREAMS) this.releaseLines(stream);
      const next = this.delivered + 1;
      const event = this.events.get(next);
      const fenced = OUTPUT_STREAMS.every((stream) => {
        const head = this.held[stream][0];
        return head !== undefined && 'fence' in head && head.fence === next;
      });
      if (!event || !fenced) return;
      for (const stream of OUTPUT_STREAMS) this.held[stream].shift();
      this.events.delete(next);
      this.delivered = next;
      this.handlers.event(event);
    }
  }

  /** Hands out a stream's lines up to its next fence. */
  private releaseLines(stream: OutputStream): void {
    const held = this.held[stream];
    while (held.length > 0 && 'line' in held[0]) {
      this.handlers.line(stream, (held.shift() as { line: string }).line);
    }
  }
}

/**
 * The most telling error line in Blender's output, e.g.
 * "Error: File format is not supported in file '/x.txt'", or null.
 * Python tracebacks end with "SomeError: message", which counts too.
 */
export function findBlenderError(lines: readonly string[]): string | null {
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i].trim();
    if (/^Error:/.test(line) || /^[A-Za-z_.]*Error: /.test(line)) return line;
  }
  return null;
}
