import type { RenderRequest } from '../jobs/index.ts';
import type { SceneInfo, SceneOverrides } from '../protocol/index.ts';
import type { JobRow } from '../store/index.ts';

/** What a job was submitted with, as kept in `requested_json`. */
export type StoredRequest = RenderRequest & { hold?: boolean; maxWorkers?: number; requiredTags?: string[]; blender?: string };

/** The parts of a job row that are stored encoded (JSON text, 0/1 flags), decoded. */
export interface JobRecord {
  allowScripts: boolean;
  request: StoredRequest;
  overrides: SceneOverrides;
  /** Null until a worker has read the scene. */
  scene: SceneInfo | null;
}

/** Rows are frozen and cached by the store, so each is decoded once. */
const decoded = new WeakMap<Readonly<JobRow>, JobRecord>();

/** The one place a job row's encoded columns are read. */
export function jobRecord(row: Readonly<JobRow>): JobRecord {
  let record = decoded.get(row);
  if (!record) {
    record = {
      allowScripts: row.allow_scripts === 1,
      request: JSON.parse(row.requested_json) as StoredRequest,
      overrides: JSON.parse(row.overrides_json) as SceneOverrides,
      scene: row.scene_json ? (JSON.parse(row.scene_json) as SceneInfo) : null,
    };
    decoded.set(row, record);
  }
  return record;
}
