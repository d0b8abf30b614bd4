/**
 * A frame cannot be stitched because of its tiles: a wrong grid, a missing, truncated or
 * mis-sized tile, tiles that disagree on format or depth, or a format the stitcher cannot
 * carry over unchanged. Re-rendering the named tile (or fixing the grid) is the remedy.
 * Other errors (ffmpeg missing, disk full) are thrown as plain Errors.
 */
export class StitchError extends Error {
  /** Index into `StitchRequest.tiles` of the tile at fault, when one tile is to blame. */
  readonly tile?: number;

  constructor(message: string, tile?: number, options?: ErrorOptions) {
    super(message, options);
    this.name = 'StitchError';
    if (tile !== undefined) this.tile = tile;
  }
}
