import type { PixelRect } from '../protocol/tiles.ts';

/** What a stitch is asked to do, shared by the PNG/TIFF and EXR stitchers. */
export interface TileFile {
  file: string;
  rect: PixelRect;
}

export interface StitchRequest {
  /** Every tile of the frame, in any order. */
  tiles: TileFile[];
  frameWidth: number;
  frameHeight: number;
  /** The job's output extension; tiles are in the same format. */
  extension: 'png' | 'tif' | 'exr';
  /** The stitched frame's path; replaced atomically. */
  output: string;
  /** ffmpeg, for EXR. */
  ffmpegPath: string;
}

/** A tile that passed the common checks, with the name errors use for it. */
export interface CheckedTile extends TileFile {
  index: number;
  label: string;
}
