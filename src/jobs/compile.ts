import {
  fileExtensionOf,
  frameCount,
  MAX_FRAMES_PER_JOB,
  type FrameOrder,
  type FrameRange,
  type OutputFormat,
  type SceneInfo,
  type SceneOverrides,
  type SceneProblem,
  type TileRequest,
} from '../protocol/index.ts';
import { CompileError } from './errors.ts';
import { planTiling, type JobTilingPlan } from './tiling.ts';

/** What the user asked for, each field falling back to the scene's own value when absent. */
export interface RenderRequest {
  frames?: FrameRange;
  fileFormat?: OutputFormat;
  resolutionPercentage?: number | null;
  samples?: number | null;
  tiles?: TileRequest;
  forceTiles?: boolean;
  /** false: render without Cycles' denoising (the fix for DENOISER_UNAVAILABLE). */
  denoising?: boolean;
  /** Absent in jobs stored before frame orders existed: they are interleaved like new ones. */
  order?: FrameOrder;
}

export interface CompiledJob {
  range: FrameRange;
  fileExtension: string;
  overrides: SceneOverrides;
  tiling: JobTilingPlan;
}

export { CompileError };

/**
 * Turns a probed scene and the user's request into what the farm renders (Flamenco calls
 * this job compilation). Pure: no I/O, so every rule is tested directly.
 */
export function compileJob(scene: SceneInfo, request: RenderRequest): CompiledJob {
  const blocking = blockingProblems(scene, request);
  if (blocking.length > 0) throw new CompileError(blocking.map(describeProblem).join('; '));
  const range = request.frames ?? { start: scene.frameStart, end: scene.frameEnd, step: scene.frameStep };
  if (range.end < range.start) {
    throw new CompileError(`the scene's frame range ${range.start}-${range.end} is empty; choose frames to render`);
  }
  if (frameCount(range) > MAX_FRAMES_PER_JOB) {
    throw new CompileError(`${frameCount(range)} frames are more than the ${MAX_FRAMES_PER_JOB} one job may have`);
  }
  const format = request.fileFormat ?? scene.fileFormat;
  const fileExtension = fileExtensionOf[format];
  if (!fileExtension) {
    throw new CompileError(`the scene saves ${format} images, which the farm cannot collect; choose PNG, JPEG, OPEN_EXR or TIFF`);
  }
  const tiling = planTiling(scene, {
    tiles: request.tiles ?? 'auto',
    forceTiles: request.forceTiles ?? false,
    fileFormat: format,
    resolutionPercentage: request.resolutionPercentage ?? scene.resolutionPercentage,
  });
  return {
    range,
    fileExtension,
    tiling,
    overrides: {
      engine: null,
      resolutionPercentage: request.resolutionPercentage ?? null,
      samples: request.samples ?? null,
      fileFormat: request.fileFormat ?? null,
      denoising: request.denoising === false ? false : null,
    },
  };
}

/** The preflight's errors that the request does not avoid: the job cannot render any frame. */
export function blockingProblems(scene: SceneInfo, request: RenderRequest): SceneProblem[] {
  return scene.problems.filter((problem) => problem.severity === 'error' && !(problem.fix === 'disable_denoising' && request.denoising === false));
}

function describeProblem(problem: SceneProblem): string {
  const fix = problem.fix === 'disable_denoising' ? ' (submit again with denoising off: `archenland submit --no-denoising`, or the API field denoising=false)' : '';
  return `${problem.message}${fix}`;
}

/** Files the preflight could not find: the job holds rather than render frames without them. */
export function missingFiles(scene: Pick<SceneInfo, 'problems'>): SceneProblem[] {
  return scene.problems.filter((problem) => problem.code === 'MISSING_FILE');
}

/**
 * Why the job's frames cannot be made into a video, or null. ffmpeg cannot read Blender's
 * multilayer EXR (every pass and view layer in one file, kept whole): such a job
 * delivers its frames alone.
 */
export function noVideoReason(scene: Pick<SceneInfo, 'fileFormat'>, overrides: Pick<SceneOverrides, 'fileFormat'>): string | null {
  const format = overrides.fileFormat ?? scene.fileFormat;
  return format === 'OPEN_EXR_MULTILAYER' ? 'no video: the frames are multilayer EXR (every pass and layer in one file), which ffmpeg cannot read; download them with frames.zip' : null;
}
