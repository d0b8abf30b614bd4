import { hasBlender } from '../protocol/blender-versions.ts';

/**
 * Which workers may render a job at all, whatever the queue says: the job's needs
 * against what each worker has. Told by the farm when a worker connects or changes.
 */
export interface WorkerTraits {
  /** Its owner lets it run the Python inside .blend files (allow_scripts). */
  allowScripts: boolean;
  tags: ReadonlySet<string>;
  /** The versions of its Blender installations. */
  blenders: readonly string[];
}

export interface JobNeeds {
  needsScripts: boolean;
  /** Every one of these tags. */
  requiredTags: readonly string[];
  /** A Blender of this release ("4.2"); null: any. */
  blender: string | null;
}

export const noTraits = (): WorkerTraits => ({ allowScripts: false, tags: new Set(), blenders: [] });

export function canRender(needs: JobNeeds, worker: WorkerTraits | undefined): boolean {
  if (!worker) return !needs.needsScripts && needs.requiredTags.length === 0 && needs.blender === null;
  return (
    (!needs.needsScripts || worker.allowScripts) &&
    needs.requiredTags.every((tag) => worker.tags.has(tag)) &&
    (needs.blender === null || hasBlender(worker.blenders, needs.blender))
  );
}
