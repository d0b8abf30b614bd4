import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { RESULT_IMAGE_FIELD, RESULT_MANIFEST_FIELD, RESULT_PASS_FIELD, type ResultManifest, type SceneInfo } from '../src/protocol/index.ts';
import { MultipartBody } from '../src/util/multipart-body.ts';

/**
 * testkit: what simulated and scripted workers report and upload instead of a real
 * render: a made-up scene and tiny frames.
 */

/** A frame to upload: bytes in memory, or a file streamed from disk, with its SHA-256. */
export type FrameBody = { kind: 'buffer'; body: Buffer; sha256: string } | { kind: 'file'; file: string; size: number; sha256: string };

export function frameFromBuffer(body: Buffer): FrameBody {
  return { kind: 'buffer', body, sha256: sha256(body) };
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
    problems: [],
    savedWith: '3.4.1',
    ...overrides,
  };
}

/**
 * A worker's result upload (src/protocol/results.ts) in memory, for scripted workers: the
 * manifest says what `manifest` overrides (a wrong checksum, say), else the truth.
 */
export async function resultUpload(
  image: Buffer,
  options: { manifest?: Partial<ResultManifest>; passes?: Array<{ name: string; body: Buffer }> } = {},
): Promise<{ body: Buffer; contentType: string }> {
  const passes = options.passes ?? [];
  const manifest: ResultManifest = {
    sha256: sha256(image),
    renderMs: 100,
    log: '',
    passes: passes.map((pass) => ({ name: pass.name, sha256: sha256(pass.body) })),
    blenderVersion: null,
    ...options.manifest,
  };
  const multipart = new MultipartBody({ [RESULT_MANIFEST_FIELD]: JSON.stringify(manifest) }, [
    { field: RESULT_IMAGE_FIELD, fileName: 'image', source: { buffer: image } },
    ...passes.map((pass, index) => ({ field: `${RESULT_PASS_FIELD}${index}`, fileName: pass.name, source: { buffer: pass.body } })),
  ]);
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk);
      done();
    },
  });
  await multipart.writeTo(sink);
  return { body: Buffer.concat(chunks), contentType: multipart.contentType };
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
