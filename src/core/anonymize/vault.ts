import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  type KeyObject,
  randomBytes,
  randomUUID,
  timingSafeEqual,
} from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { type ErrorCode, SluiceError } from '../errors/index.ts';
import { Phi } from '../model/ids.ts';
import { MIN_PSEUDONYM_KEY_BYTES, toBase32 } from './pseudonym.ts';

/**
 * Tokenisation through a vault: each (namespace, value) gets a random token, stored with the value
 * encrypted (AES-256-GCM) and found again through a keyed index, so the same value always gets the same
 * token and the vault file alone reveals nothing. Turning a token back into its value needs, besides the
 * vault secret, a signed re-identification permission (a JWT issued with a separate private key, held
 * by a privacy officer), an actor and a reason; every attempt yields an audit event value.
 */

/** What the anonymization methods need from a vault. */
export interface Tokenizer {
  tokenize(namespace: string, value: string): string;
}

export const REIDENTIFY_AUDIENCE = 'sluice:reidentify';
const PERMISSION_ALGORITHMS = ['EdDSA', 'ES256'];
/** A reason shorter than this is not a reason. */
export const MIN_REASON_LENGTH = 10;

export interface VaultOptions {
  /** The vault secret (at least 32 bytes): encrypts stored values and keys the lookup index. */
  readonly secret: Uint8Array;
  /** The public key that verifies re-identification permissions (Ed25519 or P-256). */
  readonly permissionKey: KeyObject;
  /** Clock, for tests. */
  readonly now?: () => Date;
}

export interface ReidentifyRequest {
  /** Who asks (matched against the permission's subject). */
  readonly actor: string;
  /** Why (recorded in the audit event). */
  readonly reason: string;
  /** A compact JWT from `issueReidentifyPermission`. */
  readonly permission: string;
}

/** The audit record of one re-identification attempt. It names the token, never the value. */
export interface ReidentificationEvent {
  readonly type: 'reidentification';
  readonly at: string;
  readonly actor: string;
  readonly reason: string;
  readonly token: string;
  readonly namespace?: string;
  readonly permissionId?: string;
  readonly outcome: 'granted' | 'denied';
  /** Why it was denied: `no-reason`, `invalid-permission`, `expired`, `revoked`, `actor`, `namespace`, `unknown-token`. */
  readonly denial?: string;
}

export type ReidentifyResult =
  | { readonly ok: true; readonly value: Phi<string>; readonly event: ReidentificationEvent }
  | { readonly ok: false; readonly code: ErrorCode; readonly event: ReidentificationEvent };

interface TokenRow {
  token: string;
  namespace: string;
  iv: Uint8Array;
  data: Uint8Array;
  tag: Uint8Array;
}

export class TokenVault implements Tokenizer {
  readonly #db: DatabaseSync;
  readonly #encKey: Buffer;
  readonly #indexKey: Buffer;
  readonly #permissionKey: KeyObject;
  readonly #now: () => Date;

  private constructor(db: DatabaseSync, options: VaultOptions) {
    this.#db = db;
    this.#encKey = derive(options.secret, 'sluice-vault-encryption');
    this.#indexKey = derive(options.secret, 'sluice-vault-index');
    this.#permissionKey = options.permissionKey;
    this.#now = options.now ?? (() => new Date());
  }

  /** Opens (creating if needed) a vault file, or `:memory:`. A secret that does not match the file is refused. */
  static open(path: string, options: VaultOptions): TokenVault {
    if (options.secret.byteLength < MIN_PSEUDONYM_KEY_BYTES) {
      throw new SluiceError('CFG_KEY_INVALID', `The token vault secret must have at least 32 bytes.`, {
        details: { bytes: options.secret.byteLength },
      });
    }
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path);
      db.exec(`
        PRAGMA journal_mode = WAL;
        CREATE TABLE IF NOT EXISTS vault_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS tokens (
          token TEXT PRIMARY KEY,
          namespace TEXT NOT NULL,
          lookup TEXT NOT NULL,
          iv BLOB NOT NULL,
          data BLOB NOT NULL,
          tag BLOB NOT NULL,
          created_at TEXT NOT NULL,
          UNIQUE (namespace, lookup)
        );
        CREATE TABLE IF NOT EXISTS revoked_permissions (id TEXT PRIMARY KEY, revoked_at TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS reidentifications (
          seq INTEGER PRIMARY KEY AUTOINCREMENT,
          at TEXT NOT NULL,
          actor TEXT NOT NULL,
          reason TEXT NOT NULL,
          token TEXT NOT NULL,
          namespace TEXT,
          permission_id TEXT,
          outcome TEXT NOT NULL,
          denial TEXT
        );
      `);
    } catch (err) {
      throw new SluiceError('ANON_VAULT_FAILED', `The token vault ${path} could not be opened.`, {
        cause: err,
        details: { path },
      });
    }
    const vault = new TokenVault(db, options);
    vault.#checkSecret(path);
    return vault;
  }

  #checkSecret(path: string): void {
    const check = createHmac('sha256', this.#indexKey).update('check').digest('hex');
    const row = this.#db.prepare('SELECT value FROM vault_meta WHERE key = ?').get('check') as
      | { value: string }
      | undefined;
    if (row === undefined) {
      this.#db.prepare('INSERT INTO vault_meta (key, value) VALUES (?, ?)').run('check', check);
      return;
    }
    const a = Buffer.from(row.value, 'hex');
    const b = Buffer.from(check, 'hex');
    if (a.length !== b.length || !timingSafeEqual(a, b)) {
      this.#db.close();
      throw new SluiceError('ANON_VAULT_FAILED', `The token vault ${path} was created with another secret.`, {
        details: { path },
      });
    }
  }

  /** The token of a value in a namespace: the existing one, or a new random one. */
  tokenize(namespace: string, value: string): string {
    const lookup = createHmac('sha256', this.#indexKey).update(`${namespace}\u001f${value}`).digest('hex');
    const find = this.#db.prepare('SELECT token FROM tokens WHERE namespace = ? AND lookup = ?');
    const existing = find.get(namespace, lookup) as { token: string } | undefined;
    if (existing) return existing.token;
    const token = `t${toBase32(randomBytes(16))}`;
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#encKey, iv);
    cipher.setAAD(Buffer.from(`${token}\u001f${namespace}`));
    const data = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
    try {
      this.#db
        .prepare(
          'INSERT OR IGNORE INTO tokens (token, namespace, lookup, iv, data, tag, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
        )
        .run(token, namespace, lookup, iv, data, cipher.getAuthTag(), this.#now().toISOString());
    } catch (err) {
      throw new SluiceError('ANON_VAULT_FAILED', 'A token could not be stored in the vault.', {
        cause: err,
        details: { namespace },
      });
    }
    // Another writer may have stored the same value first: its token wins.
    const stored = find.get(namespace, lookup) as { token: string } | undefined;
    if (!stored) throw new SluiceError('ANON_VAULT_FAILED', 'A token vanished from the vault after insert.');
    return stored.token;
  }

  /** Number of tokens held (all namespaces). */
  size(): number {
    return (this.#db.prepare('SELECT count(*) AS n FROM tokens').get() as { n: number }).n;
  }

  /** Refuses every later use of a permission, whatever its expiry. */
  revokePermission(permissionId: string): void {
    this.#db
      .prepare('INSERT OR IGNORE INTO revoked_permissions (id, revoked_at) VALUES (?, ?)')
      .run(permissionId, this.#now().toISOString());
  }

  /**
   * The value behind a token, when the permission is valid for this actor and the token's namespace and a
   * reason is given. The permission is checked before the token is looked up, so a caller without one
   * cannot even learn whether a token exists. Granted or not, the attempt is recorded in the vault and
   * returned as an event for the caller's audit log.
   */
  async reidentify(token: string, request: ReidentifyRequest): Promise<ReidentifyResult> {
    const at = this.#now();
    const base = {
      type: 'reidentification',
      at: at.toISOString(),
      actor: request.actor,
      reason: request.reason,
      token,
    } as const;
    const deny = (denial: string, extra: Partial<ReidentificationEvent> = {}): ReidentifyResult => {
      const code: ErrorCode = denial === 'unknown-token' ? 'ANON_TOKEN_UNKNOWN' : 'ANON_REIDENTIFY_DENIED';
      const event: ReidentificationEvent = { ...base, ...extra, outcome: 'denied', denial };
      this.#record(event);
      return { ok: false, code, event };
    };
    if (request.reason.trim().length < MIN_REASON_LENGTH) return deny('no-reason');
    let claims: { sub?: string; jti?: string; ns?: unknown };
    try {
      const verified = await jwtVerify(request.permission, this.#permissionKey, {
        audience: REIDENTIFY_AUDIENCE,
        algorithms: PERMISSION_ALGORITHMS,
        currentDate: at,
        requiredClaims: ['sub', 'jti', 'exp'],
      });
      claims = verified.payload;
    } catch (err) {
      return deny(err instanceof joseErrors.JWTExpired ? 'expired' : 'invalid-permission');
    }
    const permissionId = String(claims.jti);
    if (this.#isRevoked(permissionId)) return deny('revoked', { permissionId });
    if (claims.sub !== request.actor) return deny('actor', { permissionId });
    const row = this.#db
      .prepare('SELECT token, namespace, iv, data, tag FROM tokens WHERE token = ?')
      .get(token) as TokenRow | undefined;
    const namespaces = Array.isArray(claims.ns) ? claims.ns.filter((n) => typeof n === 'string') : [];
    if (!row) return deny('unknown-token', { permissionId });
    if (!namespaces.includes(row.namespace) && !namespaces.includes('*')) {
      return deny('namespace', { permissionId, namespace: row.namespace });
    }
    const value = this.#decrypt(row);
    const event: ReidentificationEvent = {
      ...base,
      namespace: row.namespace,
      permissionId,
      outcome: 'granted',
    };
    this.#record(event);
    return { ok: true, value: new Phi(value), event };
  }

  /** The recorded attempts, oldest first. */
  attempts(): ReidentificationEvent[] {
    const rows = this.#db
      .prepare(
        'SELECT at, actor, reason, token, namespace, permission_id, outcome, denial FROM reidentifications ORDER BY seq',
      )
      .all() as {
      at: string;
      actor: string;
      reason: string;
      token: string;
      namespace: string | null;
      permission_id: string | null;
      outcome: 'granted' | 'denied';
      denial: string | null;
    }[];
    return rows.map((r) => ({
      type: 'reidentification',
      at: r.at,
      actor: r.actor,
      reason: r.reason,
      token: r.token,
      ...(r.namespace === null ? {} : { namespace: r.namespace }),
      ...(r.permission_id === null ? {} : { permissionId: r.permission_id }),
      outcome: r.outcome,
      ...(r.denial === null ? {} : { denial: r.denial }),
    }));
  }

  close(): void {
    this.#db.close();
  }

  #isRevoked(permissionId: string): boolean {
    return (
      this.#db.prepare('SELECT 1 AS x FROM revoked_permissions WHERE id = ?').get(permissionId) !== undefined
    );
  }

  #record(event: ReidentificationEvent): void {
    this.#db
      .prepare(
        'INSERT INTO reidentifications (at, actor, reason, token, namespace, permission_id, outcome, denial) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      )
      .run(
        event.at,
        event.actor,
        event.reason,
        event.token,
        event.namespace ?? null,
        event.permissionId ?? null,
        event.outcome,
        event.denial ?? null,
      );
  }

  #decrypt(row: TokenRow): string {
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#encKey, row.iv);
      decipher.setAAD(Buffer.from(`${row.token}\u001f${row.namespace}`));
      decipher.setAuthTag(row.tag);
      return Buffer.concat([decipher.update(row.data), decipher.final()]).toString('utf8');
    } catch (err) {
      throw new SluiceError('ANON_VAULT_FAILED', 'A vault entry failed its integrity check.', { cause: err });
    }
  }
}

function derive(secret: Uint8Array, label: string): Buffer {
  return createHmac('sha256', secret).update(label).digest();
}

export interface PermissionClaims {
  readonly actor: string;
  /** Token namespaces the permission covers (`*` for all). */
  readonly namespaces: readonly string[];
  /** Lifetime in seconds (at most a day: permissions are for one task, not standing access). */
  readonly ttlSeconds: number;
  readonly issuer?: string;
  readonly now?: Date;
}

/** Signs a re-identification permission with the privacy officer's private key (Ed25519 or P-256). */
export async function issueReidentifyPermission(
  privateKey: KeyObject,
  claims: PermissionClaims,
): Promise<string> {
  if (!(claims.ttlSeconds > 0 && claims.ttlSeconds <= 86_400)) {
    throw new SluiceError('ANON_CONTEXT_INVALID', 'A re-identification permission lives 1 s to 24 h.', {
      details: { ttlSeconds: claims.ttlSeconds },
    });
  }
  const alg = keyAlgorithm(privateKey);
  const now = Math.floor((claims.now ?? new Date()).getTime() / 1000);
  const jwt = new SignJWT({ ns: [...claims.namespaces], scope: 'reidentify' })
    .setProtectedHeader({ alg })
    .setSubject(claims.actor)
    .setAudience(REIDENTIFY_AUDIENCE)
    .setIssuedAt(now)
    .setExpirationTime(now + claims.ttlSeconds)
    .setJti(randomUUID());
  if (claims.issuer !== undefined) jwt.setIssuer(claims.issuer);
  return jwt.sign(privateKey);
}

function keyAlgorithm(key: KeyObject): string {
  const type = key.asymmetricKeyType;
  if (type === 'ed25519') return 'EdDSA';
  if (type === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  throw new SluiceError(
    'CFG_KEY_INVALID',
    'Re-identification permissions are signed with Ed25519 or P-256 keys.',
    {
      details: { keyType: String(type) },
    },
  );
}
