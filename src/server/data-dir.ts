import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';

/**
 * Every file the server writes lives under one data directory. Names inside it are built
 * only from server-made ids and hex digests, never from anything a user uploaded.
 */
export class DataDir {
  constructor(readonly root: string) {}

  get database() {
    return path.join(this.root, 'farm.sqlite');
  }
  get tokenFile() {
    return path.join(this.root, 'farm-token');
  }
  get tmp() {
    return path.join(this.root, 'tmp');
  }
  blend(sha256: string) {
    return path.join(this.root, 'blends', `${sha256}.blend`);
  }
  jobDir(jobId: string) {
    return path.join(this.root, 'jobs', jobId);
  }
  framesDir(jobId: string) {
    return path.join(this.jobDir(jobId), 'frames');
  }
  frameFile(jobId: string, frame: number, extension: string) {
    return path.join(this.framesDir(jobId), `${frameFileName(frame)}.${extension}`);
  }
  tilesDir(jobId: string) {
    return path.join(this.jobDir(jobId), 'tiles');
  }
  frameTilesDir(jobId: string, frame: number) {
    return path.join(this.tilesDir(jobId), frameFileName(frame));
  }
  /** Where a tile of a split frame waits for the other tiles until the frame is stitched. */
  tileFile(jobId: string, frame: number, tile: number, extension: string) {
    return path.join(this.frameTilesDir(jobId, frame), `tile_${String(tile).padStart(2, '0')}.${extension}`);
  }
  video(jobId: string) {
    return path.join(this.jobDir(jobId), 'video.mp4');
  }

  create(): void {
    for (const dir of [this.root, this.tmp, path.join(this.root, 'blends'), path.join(this.root, 'jobs')]) {
      mkdirSync(dir, { recursive: true });
    }
  }

  /**
   * The farm token workers present. Generated once and kept in the data directory so
   * `archenland start` and a CLI run in the same folder find it without copying.
   */
  loadOrCreateToken(configured?: string): { token: string; created: boolean } {
    if (configured) return { token: configured, created: false };
    if (existsSync(this.tokenFile)) {
      return { token: readFileSync(this.tokenFile, 'utf8').trim(), created: false };
    }
    const token = randomBytes(24).toString('base64url');
    writeFileSync(this.tokenFile, `${token}\n`, { mode: 0o600 });
    return { token, created: true };
  }
}

/** frame_0001, frame_-0003: Blender's own zero padding, so sorted names are sorted frames. */
export function frameFileName(frame: number): string {
  const digits = String(Math.abs(frame)).padStart(4, '0');
  return `frame_${frame < 0 ? '-' : ''}${digits}`;
}
