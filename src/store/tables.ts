
/** Row shapes as stored. JSON columns hold text; booleans are 0/1 (portable to PostgreSQL). */
export interface JobsTable {
  id: string;
  seq: number;
  name: string;
  state: string;
  priority: number;
  allow_scripts: number;
  blend_sha256: string;
  blend_size: number;
  requested_json: string;
  overrides_json: string;
  scene_json: string | null;
  frame_start: number | null;
  frame_end: number | null;
  frame_step: number | null;
  fps: number | null;
  file_extension: string | null;
  video_file: string | null;
  error: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  /** The job's project (the files its .blend uses), or null for a self-contained .blend. */
  project_id: string | null;
  /** The Blender release it renders with ("4.2"), chosen once its scene is read; null before. */
  blender_version: string | null;
}

export interface FramesTable {
  job_id: string;
  number: number;
  state: string;
  worker_id: string | null;
  attempts: number;
  render_ms: number | null;
  file: string | null;
  sha256: string | null;
  error: string | null;
  log: string | null;
  finished_at: string | null;
  /** The version of the Blender that rendered it. */
  blender_version: string | null;
}

export interface WorkersTable {
  id: string;
  name: string;
  host: string;
  threads: number;
  blender_version: string | null;
  frames_rendered: number;
  render_ms_total: number;
  enabled: number;
  /** Tags set on the server (JSON array), replacing the worker's `tags` setting; null: that setting. */
  tags_json: string | null;
  first_seen_at: string;
  last_seen_at: string;
}

export interface TokensTable {
  id: string;
  name: string;
  /** user | worker | farm (the legacy single token, both at once) */
  role: string;
  /** SHA-256 of the secret, hex. */
  hash: string;
  created_at: string;
}

export interface SessionsTable {
  /** SHA-256 of the browser's session id, hex. */
  hash: string;
  token_id: string;
  created_at: string;
  expires_at: string;
}

export interface ProjectsTable {
  /** SHA-256 of the manifest (src/protocol/projects.ts), so the same project is stored once. */
  id: string;
  root: string;
  main: string;
  /** [{path, sha256, size}] */
  files_json: string;
  total_bytes: number;
  created_at: string;
}

export interface TagSchedulesTable {
  tag: string;
  /** The schedule's text, e.g. "Mon-Fri 18:00-08:00" (src/protocol/schedule.ts). */
  schedule: string;
  /** finish | now; null: each worker's own schedule_stop. */
  stop: string | null;
  updated_at: string;
}

export interface Database {
  projects: ProjectsTable;
  jobs: JobsTable;
  frames: FramesTable;
  workers: WorkersTable;
  tokens: TokensTable;
  sessions: SessionsTable;
  tag_schedules: TagSchedulesTable;
}
