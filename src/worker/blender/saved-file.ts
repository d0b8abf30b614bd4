import { lstat, realpath } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, normalize } from 'node:path';

/**
 * Every extension Blender 3.4 gives a still image (render.frame_path for each
 * image format; movie formats are refused before rendering).
 */
export const IMAGE_EXTENSIONS: readonly string[] = [
  '.png', '.jpg', '.jp2', '.j2c', '.bmp', '.rgb', '.tga', '.cin', '.dpx', '.exr', '.hdr', '.tif', '.webp',
];

/** Why an output pattern cannot be rendered to, or null when it can. */
export function outputPatternProblem(outputPattern: string): string | null {
  // Blender would resolve a relative one against its own cwd or the .blend's folder.
  if (!isAbsolute(outputPattern)) return `output pattern must be an absolute path: ${outputPattern}`;
  // The saved file is compared with the pattern character for character.
  if (normalize(outputPattern) !== outputPattern || outputPattern.endsWith('/')) {
    return `output pattern must be a normalized path to a file name: ${outputPattern}`;
  }
  return null;
}

/**
 * A file name with its frame number filled in as Blender does it: the last run
 * of "#" becomes the number zero-padded to that many digits ("frame_##" and 7
 * give "frame_07", -3 gives "frame_-003" for "####"); with no "#", four digits are
 * appended. "#" in folder names is left alone, so only the name is given here.
 */
export function expandFrameNumber(fileName: string, frame: number): string {
  const runs = [...fileName.matchAll(/#+/g)];
  const last = runs.at(-1);
  const digits = last ? last[0].length : 4;
  const number = (frame < 0 ? '-' : '') + String(Math.abs(frame)).padStart(digits, '0');
  if (!last || last.index === undefined) return fileName + number;
  return fileName.slice(0, last.index) + number + fileName.slice(last.index + digits);
}

/**
 * Checks that `reported`, a path Blender's session said it saved frame `frame`
 * to, is exactly that frame's output file: in the pattern's folder, named as the
 * pattern with "#" expanded plus an image extension, a regular file with no other
 * links, not a symbolic link, and really inside the folder. The worker uploads
 * and then deletes that file, so anything else is refused and left untouched.
 * Throws an Error saying what is wrong.
 */
export async function checkSavedFile(outputPattern: string, frame: number, reported: string): Promise<void> {
  const folder = dirname(outputPattern);
  const expected = join(folder, expandFrameNumber(basename(outputPattern), frame));
  const refuse = (why: string) =>
    new Error(
      `Blender reported frame ${frame} saved as ${JSON.stringify(reported)}, which is not this frame's ` +
        `output file ${expected}.<image extension>: ${why}; the file was left alone`,
    );

  if (dirname(reported) !== folder) throw refuse(`it is not in the output folder ${folder}`);
  const extension = reported.startsWith(expected) ? reported.slice(expected.length) : null;
  if (extension === null || !IMAGE_EXTENSIONS.includes(extension)) {
    throw refuse(`its name is not ${basename(expected)} followed by an image extension`);
  }

  let stats;
  try {
    stats = await lstat(reported);
  } catch (error) {
    throw refuse(`it cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  if (stats.isSymbolicLink()) throw refuse('it is a symbolic link');
  if (!stats.isFile()) throw refuse('it is not a regular file');
  // A hard link would make the upload, and the deletion after it, reach another file.
  if (stats.nlink !== 1) throw refuse(`it has ${stats.nlink} hard links`);

  let realFolder: string;
  let realFile: string;
  try {
    [realFolder, realFile] = await Promise.all([realpath(folder), realpath(reported)]);
  } catch (error) {
    throw refuse(`its real path cannot be found (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  if (realFile !== join(realFolder, basename(reported))) {
    throw refuse(`it resolves to ${realFile}, outside the output folder ${realFolder}`);
  }
}
