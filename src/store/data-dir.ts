import { mkdirSync } from 'node:fs';
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
  /** The legacy single token of servers from before token roles; honoured while it exists. */
  get tokenFile() {
    return path.join(this.root, 'farm-token');
  }
  /** The first user token, made on first start for the CLI and browsers on this machine. */
  get userTokenFile() {
    return path.join(this.root, 'user-token');
  }
  /** The first worker token, made on first start; `archenland start` gives it to its worker. */
  get workerTokenFile() {
    return path.join(this.root, 'worker-token');
  }
  get tmp() {
    return path.join(this.root, 'tmp');
  }
  blend(sha256: string) {
    return path.join(this.root, 'blends', `${sha256}.blend`);
  }
  /** The files projects use, each stored once by its SHA-256. */
  get projectFilesDir() {
    return path.join(this.root, 'files');
  }
  projectFile(sha256: string) {
    return path.join(this.projectFilesDir, sha256.slice(0, 2), sha256);
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
  /** The compositor's File Output passes of the job's finished frames, a folder per frame. */
  passesDir(jobId: string) {
    return path.join(this.jobDir(jobId), 'passes');
  }
  /** Where the passes of one finished frame are kept, by their names. */
  framePassesDir(jobId: string, frame: number) {
    return path.join(this.passesDir(jobId), frameFileName(frame));
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
}

/** frame_0001, frame_-0003: Blender's own zero padding, so sorted names are sorted frames. */
export function frameFileName(frame: number): string {
  const digits = String(Math.abs(frame)).padStart(4, '0');
  return `frame_${frame < 0 ? '-' : ''}${digits}`;
}
