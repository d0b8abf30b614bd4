import { z } from 'zod';

/** Progress of one frame, from Blender's "Fra:" status lines. */
export type FrameProgress = { frame: number; done: number; total: number; percent: number };

/** Lines our Blender scripts print for the worker start with this. */
export const SESSION_EVENT_PREFIX = '@@ARCHENLAND ';

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

const sessionEventSchema = z.discriminatedUnion('event', [
  /** A pre-warmed session is up, with no scene yet, waiting for "open". */
  z.object({ event: z.literal('waiting'), blenderVersion: z.string() }),
  z.object({ event: z.literal('ready'), blenderVersion: z.string(), sceneName: z.string() }),
  z.object({ event: z.literal('saved'), frame: z.number().int(), path: z.string().min(1) }),
  z.object({ event: z.literal('error'), frame: z.number().int().nullable(), message: z.string() }),
  /** The session could not start serving (e.g. an invalid override); Blender exits. */
  z.object({ event: z.literal('fatal'), message: z.string() }),
]);

export type SessionEvent = z.infer<typeof sessionEventSchema>;

/** Parse an "@@ARCHENLAND {json}" line; null for any other or malformed line. */
export function parseSessionEvent(line: string): SessionEvent | null {
  if (!line.startsWith(SESSION_EVENT_PREFIX)) return null;
  let json: unknown;
  try {
    json = JSON.parse(line.slice(SESSION_EVENT_PREFIX.length));
  } catch {
    return null;
  }
  const parsed = sessionEventSchema.safeParse(json);
  return parsed.success ? parsed.data : null;
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
