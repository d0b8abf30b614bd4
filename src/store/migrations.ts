import type { Kysely, Migration, MigrationProvider } from 'kysely';

/** Migrations live in code so the store needs no files beside the binary. Append only. */
const migrations: Record<string, Migration> = {
  '0001_initial': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('jobs')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('seq', 'integer', (c) => c.notNull().unique())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('priority', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('allow_scripts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('blend_sha256', 'text', (c) => c.notNull())
        .addColumn('blend_size', 'integer', (c) => c.notNull())
        .addColumn('requested_json', 'text', (c) => c.notNull())
        .addColumn('overrides_json', 'text', (c) => c.notNull())
        .addColumn('scene_json', 'text')
        .addColumn('frame_start', 'integer')
        .addColumn('frame_end', 'integer')
        .addColumn('frame_step', 'integer')
        .addColumn('fps', 'real')
        .addColumn('file_extension', 'text')
        .addColumn('video_file', 'text')
        .addColumn('error', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('started_at', 'text')
        .addColumn('finished_at', 'text')
        .execute();
      await db.schema
        .createTable('frames')
        .addColumn('job_id', 'text', (c) => c.notNull().references('jobs.id').onDelete('cascade'))
        .addColumn('number', 'integer', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('worker_id', 'text')
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('render_ms', 'integer')
        .addColumn('file', 'text')
        .addColumn('sha256', 'text')
        .addColumn('error', 'text')
        .addColumn('log', 'text')
        .addColumn('finished_at', 'text')
        .addPrimaryKeyConstraint('frames_pk', ['job_id', 'number'])
        .execute();
      await db.schema.createIndex('frames_by_state').on('frames').columns(['job_id', 'state']).execute();
      await db.schema
        .createTable('workers')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('host', 'text', (c) => c.notNull())
        .addColumn('threads', 'integer', (c) => c.notNull())
        .addColumn('blender_version', 'text')
        .addColumn('frames_rendered', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('render_ms_total', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('first_seen_at', 'text', (c) => c.notNull())
        .addColumn('last_seen_at', 'text', (c) => c.notNull())
        .execute();
    },
  },
  '0002_worker_enabled': {
    async up(db: Kysely<any>) {
      await db.schema.alterTable('workers').addColumn('enabled', 'integer', (c) => c.notNull().defaultTo(1)).execute();
    },
  },
  '0003_credentials': {
    async up(db: Kysely<any>) {
      // Secrets are kept only as SHA-256 digests: a copy of the database opens nothing.
      await db.schema
        .createTable('tokens')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull().unique())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('sessions')
        .addColumn('hash', 'text', (c) => c.primaryKey())
        .addColumn('token_id', 'text', (c) => c.notNull().references('tokens.id').onDelete('cascade'))
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text', (c) => c.notNull())
        .execute();
    },
  },
  '0004_projects': {
    async up(db: Kysely<any>) {
      // A project's manifest: the files a job's .blend uses, each stored once by content.
      await db.schema
        .createTable('projects')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('root', 'text', (c) => c.notNull())
        .addColumn('main', 'text', (c) => c.notNull())
        .addColumn('files_json', 'text', (c) => c.notNull())
        .addColumn('total_bytes', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema.alterTable('jobs').addColumn('project_id', 'text').execute();
    },
  },
  '0005_worker_tags': {
    async up(db: Kysely<any>) {
      // Tags an admin gave a worker on the server (JSON array); null: the worker's own setting applies.
      await db.schema.alterTable('workers').addColumn('tags_json', 'text').execute();
    },
  },
  '0006_blender_versions': {
    async up(db: Kysely<any>) {
      // The Blender release a job renders with, chosen once its scene is read; and, per frame, the version that rendered it.
      await db.schema.alterTable('jobs').addColumn('blender_version', 'text').execute();
      await db.schema.alterTable('frames').addColumn('blender_version', 'text').execute();
    },
  },
  '0007_tag_schedules': {
    async up(db: Kysely<any>) {
      // The hours the workers carrying a tag render (a whole room's), set on the server.
      await db.schema
        .createTable('tag_schedules')
        .addColumn('tag', 'text', (c) => c.primaryKey())
        .addColumn('schedule', 'text', (c) => c.notNull())
        .addColumn('stop', 'text')
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
    },
  },
};

export const migrationProvider: MigrationProvider = {
  async getMigrations() {
    return migrations;
  },
};
