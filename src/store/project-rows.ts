import type { Kysely } from 'kysely';
import type { ProjectFile, ProjectManifest } from '../protocol/index.ts';
import type { Database } from './tables.ts';

export interface ProjectRow extends ProjectManifest {
  id: string;
  totalBytes: number;
  createdAt: string;
}

/** Project manifests; the files themselves live in the data folder by content (DataDir.projectFile). */
export class ProjectRows {
  constructor(private readonly db: Kysely<Database>) {}

  /** Stores a manifest under its id; the same manifest again only counts as new (for collect's grace period). */
  async put(id: string, manifest: ProjectManifest, createdAt: string): Promise<void> {
    const totalBytes = manifest.files.reduce((sum, file) => sum + file.size, 0);
    await this.db
      .insertInto('projects')
      .values({ id, root: manifest.root, main: manifest.main, files_json: JSON.stringify(manifest.files), total_bytes: totalBytes, created_at: createdAt })
      .onConflict((c) => c.column('id').doUpdateSet({ created_at: createdAt }))
      .execute();
  }

  async get(id: string): Promise<ProjectRow | undefined> {
    const row = await this.db.selectFrom('projects').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) return undefined;
    return { id: row.id, root: row.root, main: row.main, files: JSON.parse(row.files_json) as ProjectFile[], totalBytes: row.total_bytes, createdAt: row.created_at };
  }

  /**
   * Removes projects no job uses that were made before `before` (a project is made just
   * before its job is submitted), and returns the content hashes the remaining ones use.
   */
  async collect(before: string): Promise<Set<string>> {
    const used = this.db.selectFrom('jobs').select('project_id').where('project_id', 'is not', null);
    await this.db.deleteFrom('projects').where('created_at', '<', before).where('id', 'not in', used as never).execute();
    const kept = await this.db.selectFrom('projects').select('files_json').execute();
    const hashes = new Set<string>();
    for (const row of kept) for (const file of JSON.parse(row.files_json) as ProjectFile[]) hashes.add(file.sha256);
    return hashes;
  }
}
