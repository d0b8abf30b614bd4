import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { TokenInfo, TokenRole } from '../protocol/index.ts';
import type { CredentialRows, TokenRow } from '../store/index.ts';
import type { DataDir } from '../store/index.ts';
import { FarmError } from '../farm/index.ts';

export type { TokenInfo, TokenRole };

/** What a role may do: a worker token speaks the worker protocol only; a user token uses the API. */
export const mayUseApi = (role: TokenRole) => role === 'user' || role === 'farm';
export const mayWork = (role: TokenRole) => role === 'worker' || role === 'farm';

/** A browser session lasts this long after login; logging in again starts a new one. */
export const SESSION_LIFETIME_MS = 14 * 24 * 3600 * 1000;

/** The id of the legacy single token (`token` setting, or a `farm-token` file from before roles). */
const FARM_TOKEN_ID = 'farm';

const digest = (secret: string) => createHash('sha256').update(secret).digest('hex');
const newSecret = (role: TokenRole) => `ark_${role}_${randomBytes(32).toString('base64url')}`;
const newId = () => randomBytes(6).toString('hex');
const toInfo = (row: TokenRow): TokenInfo => ({ id: row.id, name: row.name, role: row.role as TokenRole, createdAt: row.created_at });

/** The tokens a server made for itself on first start, kept in files beside its database. */
export interface BootstrapTokens {
  user: string | null;
  worker: string | null;
  /** The legacy token, when one is in force. */
  farm: string | null;
  /** Roles whose token was created by this start. */
  created: TokenRole[];
}

/**
 * Who may talk to the farm. Tokens carry a role and are kept only as SHA-256 digests (they
 * are long random strings, so a plain digest is enough). Browser sessions are random ids,
 * also kept as digests, that expire and end at logout or when their token is revoked.
 * Everything is cached in memory: every request checks a credential, and only this
 * process changes them. Emits `revoked` (token id) so connections using it can be closed.
 */
export class Credentials extends EventEmitter<{ revoked: [tokenId: string] }> {
  private readonly byDigest = new Map<string, TokenInfo>();
  private readonly sessions = new Map<string, { tokenId: string; expiresAt: number }>();

  private constructor(
    private readonly rows: CredentialRows,
    private readonly now: () => number,
  ) {
    super();
  }

  static async open(rows: CredentialRows, now: () => number = Date.now): Promise<Credentials> {
    const credentials = new Credentials(rows, now);
    for (const row of await rows.listTokens()) credentials.byDigest.set(row.hash, toInfo(row));
    await rows.deleteExpiredSessions(new Date(now()).toISOString());
    for (const row of await rows.listSessions()) {
      credentials.sessions.set(row.hash, { tokenId: row.token_id, expiresAt: Date.parse(row.expires_at) });
    }
    return credentials;
  }

  /**
   * First start: one user and one worker token, written to files readable by the server's
   * user alone, so `archenland start` and a CLI in the same folder find them. The legacy
   * single token keeps working while it is configured (or its old file exists).
   */
  async bootstrap(dataDir: DataDir, legacyToken: string | undefined): Promise<BootstrapTokens> {
    const created: TokenRole[] = [];
    const tokenFor = async (role: 'user' | 'worker', file: string) => {
      const kept = existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
      if (kept && this.verify(kept)?.role === role) return kept;
      if (this.list().some((token) => token.role === role)) return null; // made and handed out earlier; the file is gone
      const { token } = await this.create(role, role === 'user' ? 'first user token' : 'first worker token');
      await this.rows.committed(); // a file must never hold a token the database lost
      writeFileSync(file, `${token}\n`, { mode: 0o600 });
      created.push(role);
      return token;
    };
    const user = await tokenFor('user', dataDir.userTokenFile);
    const worker = await tokenFor('worker', dataDir.workerTokenFile);
    const farm = legacyToken ?? (existsSync(dataDir.tokenFile) ? readFileSync(dataDir.tokenFile, 'utf8').trim() : null);
    if (farm) await this.putFarmToken(farm);
    else await this.dropFarmToken();
    return { user, worker, farm, created };
  }

  /** The token's identity, or null for an unknown or revoked one. */
  verify(secret: string): TokenInfo | null {
    return this.byDigest.get(digest(secret)) ?? null;
  }

  list(): TokenInfo[] {
    return [...this.byDigest.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /** A new token; its secret is returned once and never stored. */
  async create(role: 'user' | 'worker', name: string): Promise<{ info: TokenInfo; token: string }> {
    const token = newSecret(role);
    const row: TokenRow = { id: newId(), name, role, hash: digest(token), created_at: new Date(this.now()).toISOString() };
    await this.rows.insertToken(row);
    this.byDigest.set(row.hash, toInfo(row));
    return { info: toInfo(row), token };
  }

  async revoke(id: string, dataDir: DataDir, legacyFromSettings: boolean): Promise<TokenInfo> {
    const entry = [...this.byDigest.entries()].find(([, info]) => info.id === id);
    if (!entry) throw new FarmError('TOKEN_NOT_FOUND', `no token with id ${id}`);
    if (id === FARM_TOKEN_ID && legacyFromSettings) {
      throw new FarmError('TOKEN_FROM_SETTINGS', 'the farm token comes from the `token` setting: remove it from settings.conf and restart the server');
    }
    await this.rows.deleteToken(id);
    this.byDigest.delete(entry[0]);
    for (const [hash, session] of this.sessions) if (session.tokenId === id) this.sessions.delete(hash);
    if (id === FARM_TOKEN_ID) rmSync(dataDir.tokenFile, { force: true });
    this.emit('revoked', id);
    return entry[1];
  }

  /** A browser logged in with a user token: a new random session id for its cookie. */
  async startSession(token: TokenInfo): Promise<string> {
    const id = randomBytes(32).toString('base64url');
    const expiresAt = this.now() + SESSION_LIFETIME_MS;
    await this.rows.insertSession({
      hash: digest(id),
      token_id: token.id,
      created_at: new Date(this.now()).toISOString(),
      expires_at: new Date(expiresAt).toISOString(),
    });
    this.sessions.set(digest(id), { tokenId: token.id, expiresAt });
    return id;
  }

  /** The token a live session was opened with, or null (unknown, expired, revoked). */
  session(id: string): TokenInfo | null {
    const hash = digest(id);
    const session = this.sessions.get(hash);
    if (!session) return null;
    if (session.expiresAt <= this.now()) {
      this.sessions.delete(hash);
      void this.rows.deleteSession(hash);
      return null;
    }
    // Unsorted: this runs for every request a browser makes.
    for (const token of this.byDigest.values()) if (token.id === session.tokenId) return token;
    return null;
  }

  async endSession(id: string): Promise<void> {
    const hash = digest(id);
    this.sessions.delete(hash);
    await this.rows.deleteSession(hash);
  }

  private async putFarmToken(secret: string): Promise<void> {
    const row: TokenRow = { id: FARM_TOKEN_ID, name: 'farm token (legacy: opens everything)', role: 'farm', hash: digest(secret), created_at: new Date(this.now()).toISOString() };
    for (const [hash, info] of this.byDigest) if (info.id === FARM_TOKEN_ID && hash !== row.hash) this.byDigest.delete(hash);
    const existing = this.byDigest.get(row.hash);
    if (existing?.id === FARM_TOKEN_ID) return;
    await this.rows.putToken(row);
    this.byDigest.set(row.hash, toInfo(row));
  }

  private async dropFarmToken(): Promise<void> {
    if (!this.list().some((token) => token.id === FARM_TOKEN_ID)) return;
    await this.rows.deleteToken(FARM_TOKEN_ID);
    for (const [hash, info] of this.byDigest) if (info.id === FARM_TOKEN_ID) this.byDigest.delete(hash);
  }
}
