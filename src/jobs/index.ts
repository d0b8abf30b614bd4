export { blockingProblems, compileJob, CompileError, missingFiles, noVideoReason, type CompiledJob, type RenderRequest } from './compile.ts';
export { planTiling, tileBlockers, type JobTilingPlan } from './tiling.ts';
export { blenderForJob } from './blender-choice.ts';
