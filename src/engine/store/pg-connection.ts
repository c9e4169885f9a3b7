/**
 * What the PostgreSQL modules of cluster mode (the state store `pg-store.ts`, the audit store
 * `../audit/pg-audit-store.ts`, the flow lease `pg-lease.ts`) share about their server: the schema
 * names they accept, where a connection URL points (never its credentials), the secrets to keep out of
 * messages, driver errors fit to be a cause, a pool opened and prepared (or ended), the schema created
 * only when missing, and a transaction on a connection of a pool.
 */
import type pg from 'pg';
import { SluiceError } from '../../core/errors/index.ts';

/** A schema name that needs no quoting (and cannot smuggle SQL): it is written into statements as is. */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** The schema name, when it is one Sluice writes into SQL unquoted; otherwise throws CFG_FLOW_INVALID. */
export function checkSchemaName(schema: string): string {
  if (typeof schema === 'string' && SCHEMA_NAME.test(schema)) return schema;
  throw new SluiceError(
    'CFG_FLOW_INVALID',
    `The PostgreSQL schema name ${JSON.stringify(schema)} is not allowed: lower-case letters, digits and underscores, starting with a letter or underscore, at most 63 characters.`,
    { details: { schema } },
  );
}

/** Where a connection URL points, without user or password: for messages and details. */
export interface PostgresServer {
  readonly host: string;
  readonly port: string;
  readonly database: string;
}

/** Host, port and database of a connection URL (never its credentials). */
export function postgresServer(url: string): PostgresServer {
  try {
    const u = new URL(url);
    const host = decodeURIComponent(u.hostname) || u.searchParams.get('host') || 'localhost';
    return {
      host,
      port: u.port || u.searchParams.get('port') || '5432',
      database: decodeURIComponent(u.pathname.replace(/^\//, '')) || '(default)',
    };
  } catch {
    return { host: '(unparseable URL)', port: '', database: '' };
  }
}

/** `host:port/database` of a server (the placeholder alone for an unparseable URL). */
export const describeServer = (s: PostgresServer): string =>
  s.port === '' ? s.host : `${s.host}:${s.port}/${s.database}`;

/** `host:port/database` of a connection URL, without user or password. */
export const serverOf = (url: string): string => describeServer(postgresServer(url));

/**
 * The secrets of a connection URL, to keep out of messages: its password as written and decoded, and a
 * `password` query parameter. A text that is not a URL is a secret whole: nothing in it can be told apart.
 */
export function passwordsOf(url: string): string[] {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url.length > 0 ? [url] : [];
  }
  const secrets = [u.password, decoded(u.password), u.searchParams.get('password') ?? ''];
  return [...new Set(secrets.filter((s) => s.length > 0))];
}

/** Percent-decoded text, or the text as it is when it does not decode. */
function decoded(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * An error of the driver or server, fit to be a cause: its message (`secrets` replaced by `***`) and its
 * SQL state, table, column and constraint, without `detail` and `where`, which quote row values
 * (records). A SluiceError is returned as it is.
 */
export function scrubbed(err: unknown, secrets: readonly string[] = []): Error {
  if (err instanceof SluiceError) return err;
  const redact = (text: string): string =>
    secrets.reduce((out, secret) => out.split(secret).join('***'), text);
  const source = err instanceof Error ? err : new Error(String(err));
  const e = source as Error & Partial<Record<'code' | 'table' | 'column' | 'constraint', unknown>>;
  // A host name of several addresses fails with an AggregateError of one error each, and no message.
  const message =
    source.message ||
    (source instanceof AggregateError
      ? source.errors
          .map((inner: unknown) => (inner instanceof Error ? inner.message : String(inner)))
          .join('; ')
      : '') ||
    String(e.code ?? source.name);
  const clean = new Error(redact(message));
  for (const key of ['code', 'table', 'column', 'constraint'] as const) {
    if (typeof e[key] === 'string') Object.assign(clean, { [key]: redact(e[key]) });
  }
  return clean;
}

/**
 * Creates `schema` (a name `checkSchemaName` accepts) when it is missing, inside the caller's
 * transaction. Only when missing: a role without CREATE on the database may use a schema made for it.
 * The state store and the audit store may create it at the same moment, each under its own lock: the
 * creation runs under the savepoint `savepoint` (a constant identifier of the caller), so losing that
 * race (23505 unique violation, 42P06 duplicate schema) leaves the transaction usable.
 */
export async function ensureSchema(client: pg.ClientBase, schema: string, savepoint: string): Promise<void> {
  const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
  if (exists.rowCount !== 0) return;
  await client.query(`SAVEPOINT ${savepoint}`);
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await client.query(`RELEASE SAVEPOINT ${savepoint}`);
  } catch (err) {
    if (!['23505', '42P06'].includes(String((err as { code?: unknown }).code))) throw err;
    await client.query(`ROLLBACK TO SAVEPOINT ${savepoint}`);
  }
}

/**
 * Runs `work` in one transaction on a connection of `pool`: committed whole, or rolled back and thrown.
 * A connection whose rollback fails too is dropped rather than given back to the pool.
 */
export async function inTransaction<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw err;
  } finally {
    client.release(broken);
  }
}

/**
 * Opens the first connection of a new `pool` and runs `prepare` on it (creating and migrating tables):
 * its answer, or the pool ended and the error thrown, `unreachable(err)` when no connection could be
 * made. An idle connection that fails later (server restart) is dropped; the next query opens another.
 */
export async function openPool<T>(
  pool: pg.Pool,
  unreachable: (err: unknown) => Error,
  prepare: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  pool.on('error', () => undefined);
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw unreachable(err);
  }
  try {
    const result = await prepare(client);
    client.release();
    return result;
  } catch (err) {
    // A connection left mid-transaction is not given back.
    client.release(true);
    await pool.end().catch(() => undefined);
    throw err;
  }
}
