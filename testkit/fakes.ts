import { createHash } from 'node:crypto';
import type { SceneInfo } from '../src/protocol/index.ts';

/**
 * testkit: what simulated and scripted workers report and upload instead of a real
 * render: a made-up scene and tiny frames.
 */

/** A frame to upload: bytes in memory, or a file streamed from disk, with its SHA-256. */
export type FrameBody = { kind: 'buffer'; body: Buffer; sha256: string } | { kind: 'file'; file: string; size: number; sha256: string };

export function frameFromBuffer(body: Buffer): FrameBody {
  return { kind: 'buffer', body, sha256: createHash('sha256').update(body).digest('hex') };
}

/** A valid 2x2 PNG: small enough for 100k uploads, and ffmpeg can still encode the job's video. */
export const TINY_PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAACXBIWXMAAAPoAAAD6AG1e1JrAAAAEklEQVQImWM4kWJ0IsWIAUIBACiuBXmfXj+VAAAAAElFTkSuQmCC',
  'base64',
);

/** A SceneInfo as blender/probe.py would report it, for frames `start..end`. */
export function fakeScene(start: number, end: number, overrides: Partial<SceneInfo> = {}): SceneInfo {
  return {
    sceneName: 'Simulated',
    frameStart: start,
    frameEnd: end,
    frameStep: 1,
    fps: 24,
    resolutionX: 2,
    resolutionY: 2,
    resolutionPercentage: 100,
    engine: 'CYCLES',
    fileFormat: 'PNG',
    samples: 1,
    denoising: false,
    blenderVersion: '3.4.1',
    tileBlockers: [],
    ...overrides,
  };
}
