import type { Kysely, Selectable } from 'kysely';
import type { Database, SessionsTable, TokensTable } from './tables.ts';

export type TokenRow = Selectable<TokensTable>;
export type SessionRow = Selectable<SessionsTable>;

/** Access tokens and browser sessions, stored as digests only (see server/credentials.ts). */
export class CredentialRows {
  constructor(
    private readonly db: Kysely<Database>,
    /** Resolves when every write so far is on disk (the store commits in groups). */
    readonly committed: () => Promise<void>,
  ) {}

  listTokens(): Promise<TokenRow[]> {
    return this.db.selectFrom('tokens').selectAll().orderBy('created_at').execute();
  }

  async insertToken(row: TokenRow): Promise<void> {
    await this.db.insertInto('tokens').values(row).execute();
  }

  /** Inserts or replaces the token with this id (the legacy farm token follows its setting). */
  async putToken(row: TokenRow): Promise<void> {
    await this.db
      .insertInto('tokens')
      .values(row)
      .onConflict((c) => c.column('id').doUpdateSet({ hash: row.hash, name: row.name, role: row.role }))
      .execute();
  }

  /** Removes the token and, through the foreign key, every session opened with it. */
  async deleteToken(id: string): Promise<boolean> {
    await this.db.deleteFrom('sessions').where('token_id', '=', id).execute();
    const result = await this.db.deleteFrom('tokens').where('id', '=', id).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  listSessions(): Promise<SessionRow[]> {
    return this.db.selectFrom('sessions').selectAll().execute();
  }

  async insertSession(row: SessionRow): Promise<void> {
    await this.db.insertInto('sessions').values(row).execute();
  }

  async deleteSession(hash: string): Promise<void> {
    await this.db.deleteFrom('sessions').where('hash', '=', hash).execute();
  }

  async deleteExpiredSessions(nowIso: string): Promise<void> {
    await this.db.deleteFrom('sessions').where('expires_at', '<=', nowIso).execute();
  }
}
