import { chooseBlender, type SceneInfo } from '../protocol/index.ts';

/**
 * Picks the Blender a job renders with, once its scene is read, and says when that is
 * older than the one that saved the file (NEWER_BLENDER). The server decides this, not
 * the probe: the Blender that read the scene need not be the one that renders it.
 */
export function blenderForJob(
  requested: string | null,
  scene: SceneInfo,
  farmVersions: readonly string[],
): { version: string | null; scene: SceneInfo } {
  const choice = chooseBlender(requested, scene.savedWith, farmVersions);
  const problems = scene.problems.filter((problem) => problem.code !== 'NEWER_BLENDER');
  if (choice?.olderThanFile) {
    problems.push({
      code: 'NEWER_BLENDER',
      severity: 'warning',
      message: `The file was saved by Blender ${scene.savedWith}, newer than the Blender ${choice.version} it renders with${requested ? '' : ' (the newest any worker has)'}: newer features may be lost or differ.`,
    });
  }
  return { version: choice?.version ?? null, scene: { ...scene, problems } };
}
