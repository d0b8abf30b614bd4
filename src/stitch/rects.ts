import type { PixelRect } from '../protocol/tiles.ts';
import { StitchError } from './errors.ts';

export const rectText = (r: PixelRect) => `${r.width}x${r.height} at ${r.x},${r.y}`;

/**
 * Checks that the rects tile the frame exactly: each inside it, no two overlapping, and
 * together covering every pixel. A wrong grid (say 2x2 rects for a 3x2 frame) shows up
 * as a gap or an overlap, and the message says where.
 */
export function checkCoverage(rects: PixelRect[], frameWidth: number, frameHeight: number, label: (index: number) => string): void {
  if (!isCount(frameWidth) || !isCount(frameHeight)) {
    throw new StitchError(`invalid frame size ${frameWidth}x${frameHeight}`);
  }
  if (rects.length === 0) throw new StitchError('no tiles to stitch');

  rects.forEach((r, i) => {
    const whole = [r.x, r.y].every((v) => Number.isInteger(v) && v >= 0) && isCount(r.width) && isCount(r.height);
    if (!whole) throw new StitchError(`${label(i)}: invalid rect ${JSON.stringify(r)}`, i);
    if (r.x + r.width > frameWidth || r.y + r.height > frameHeight) {
      throw new StitchError(`${label(i)}: rect ${rectText(r)} reaches outside the ${frameWidth}x${frameHeight} frame`, i);
    }
  });

  for (let i = 0; i < rects.length; i++) {
    for (let j = i + 1; j < rects.length; j++) {
      const a = rects[i]!;
      const b = rects[j]!;
      const x0 = Math.max(a.x, b.x);
      const y0 = Math.max(a.y, b.y);
      const x1 = Math.min(a.x + a.width, b.x + b.width);
      const y1 = Math.min(a.y + a.height, b.y + b.height);
      if (x0 < x1 && y0 < y1) {
        throw new StitchError(
          `${label(i)} and ${label(j)} overlap in ${x1 - x0}x${y1 - y0} pixels at ${x0},${y0}; the tile grid does not match the frame`,
          j,
        );
      }
    }
  }

  // Inside the frame and disjoint, so the areas add up to the frame exactly when nothing is missing.
  const covered = rects.reduce((sum, r) => sum + r.width * r.height, 0);
  if (covered !== frameWidth * frameHeight) {
    const hole = firstUncovered(rects, frameWidth, frameHeight);
    throw new StitchError(
      `the tiles cover ${covered} of the frame's ${frameWidth * frameHeight} pixels` +
        (hole ? `; pixel ${hole.x},${hole.y} is in no tile` : '') +
        '; the tile grid does not match the frame',
    );
  }
}

/**
 * The first pixel (top to bottom, left to right) in no rect. Its left and upper
 * neighbours are covered or off the frame, so it lies on a rect's right or bottom edge
 * line (or the frame's top or left edge): only those lines need checking.
 */
function firstUncovered(rects: PixelRect[], width: number, height: number): { x: number; y: number } | null {
  const xs = [...new Set([0, ...rects.map((r) => r.x + r.width)])].filter((x) => x < width).sort((a, b) => a - b);
  const ys = [...new Set([0, ...rects.map((r) => r.y + r.height)])].filter((y) => y < height).sort((a, b) => a - b);
  for (const y of ys) {
    for (const x of xs) {
      if (!rects.some((r) => x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height)) return { x, y };
    }
  }
  return null;
}

function isCount(n: number): boolean {
  return Number.isInteger(n) && n >= 1;
}
