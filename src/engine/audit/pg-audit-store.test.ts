import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { isSluiceError } from '../../core/errors/index.ts';
import { dropSchemas, PG_SKIP, TEST_PG_URL, testSchema } from '../../testkit/postgres.ts';
import { buildBatch, loadHead } from './append.ts';
import { type AuditTamper, auditStoreContract } from './audit-store.contract.ts';
import { AuditLog } from './index.ts';
import { auditMigrations, PostgresAuditStore } from './pg-audit-store.ts';
import { syntheaAuditEvents, syntheaPatients, testKeys } from './testing.ts';

const NOW = new Date('2025-03-01T12:00:00.000Z');
const events = syntheaAuditEvents(syntheaPatients(1)).slice(0, 60);
const TABLES = ['audit_logs', 'audit_entries', 'audit_nodes', 'audit_checkpoints', 'audit_retention'];

let schemas: string[] = [];
let opened: { close(): Promise<unknown> }[] = [];
let clients: pg.Client[] = [];

afterEach(async () => {
  for (const item of opened.reverse()) await item.close().catch(() => undefined);
  for (const client of clients) await client.end().catch(() => undefined);
  opened = [];
  clients = [];
  await dropSchemas(schemas);
  schemas = [];
});

async function rawClient(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: TEST_PG_URL });
  await client.connect();
  clients.push(client);
  return client;
}

async function openStore(options: { schema: string; log?: string; logId?: string; poolSize?: number }) {
  const store = await PostgresAuditStore.open({ url: TEST_PG_URL, log: 'epic-to-veeva', ...options });
  opened.push(store);
  return store;
}

/** Raw SQL on one trail of a schema, as someone with write access to the database would. */
function pgTamper(client: pg.Client, schema: string, log: string): AuditTamper {
  const run = async (sql: string, ...params: unknown[]): Promise<pg.QueryResult> =>
    client.query(sql.replaceAll('{s}', schema), [log, ...params]);
  return {
    unguard: async () => {
      for (const table of TABLES) await client.query(`ALTER TABLE ${schema}.${table} DISABLE TRIGGER USER`);
    },
    canonical: async (seq) =>
      String(
        (await run('SELECT canonical FROM {s}.audit_entries WHERE log = $1 AND seq = $2', seq)).rows[0]
          ?.canonical,
      ),
    setCanonical: async (seq, canonical) => {
      await run('UPDATE {s}.audit_entries SET canonical = $3 WHERE log = $1 AND seq = $2', seq, canonical);
    },
    deleteEntry: async (seq) => {
      await run('DELETE FROM {s}.audit_entries WHERE log = $1 AND seq = $2', seq);
    },
    countEntries: async () =>
      Number((await run('SELECT count(*) AS n FROM {s}.audit_entries WHERE log = $1')).rows[0]?.n),
    setCheckpointJws: async (treeSize, jws) => {
      await run('UPDATE {s}.audit_checkpoints SET jws = $3 WHERE log = $1 AND tree_size = $2', treeSize, jws);
    },
    deleteCheckpoints: async () => {
      await run('DELETE FROM {s}.audit_checkpoints WHERE log = $1');
    },
    setNodeHash: async (level, index, hash) => {
      await run(
        'UPDATE {s}.audit_nodes SET hash = $4 WHERE log = $1 AND level = $2 AND idx = $3',
        level,
        index,
        Buffer.from(hash),
      );
    },
    deleteNodes: async () => {
      await run('DELETE FROM {s}.audit_nodes WHERE log = $1');
    },
    deleteRetention: async () => {
      await run('DELETE FROM {s}.audit_retention WHERE log = $1');
    },
  };
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  return promise.then(
    () => undefined,
    (err: unknown) => (isSluiceError(err) ? err.code : String(err)),
  );
}

describe.skipIf(PG_SKIP !== undefined)('PostgresAuditStore', () => {
  auditStoreContract('PostgreSQL', async (options = {}) => {
    const schema = testSchema();
    schemas.push(schema);
    const store = await openStore({ schema, ...options });
    return {
      store,
      reopen: async (again = {}) => openStore({ schema, ...again }),
      tamper: pgTamper(await rawClient(), schema, 'epic-to-veeva'),
    };
  });

  describe('PostgreSQL only', () => {
    it('creates the schema, its tables and their version once, under a lock concurrent openers wait for', async () => {
      const schema = testSchema();
      schemas.push(schema);
      const stores = await Promise.all(
        Array.from({ length: 6 }, (_, i) => openStore({ schema, logId: `site-${i}`, poolSize: 1 })),
      );
      const ids = new Set(await Promise.all(stores.map((s) => s.logId())));
      // The first opener fixed the log id; everyone else found it.
      expect(ids.size).toBe(1);
      const client = await rawClient();
      const versions = await client.query(`SELECT version FROM ${schema}.audit_schema_version`);
      expect(versions.rows).toEqual([{ version: 1 }, { version: 2 }]);
      const indexes = await client.query<{ indexname: string }>(
        `SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'audit_entries' ORDER BY 1`,
        [schema],
      );
      expect(indexes.rows.map((r) => r.indexname)).toEqual(
        expect.arrayContaining([
          'audit_entries_at',
          'audit_entries_batch',
          'audit_entries_kind',
          'audit_entries_recipient',
          'audit_entries_run',
          'audit_entries_source',
          'audit_entries_subject',
        ]),
      );
    });

    it('refuses a schema name it would have to quote, and tables written by a newer version', async () => {
      for (const schema of ['Sluice', 'a-b', 'x; DROP TABLE y', '', 'a'.repeat(64)]) {
        expect(await codeOf(PostgresAuditStore.open({ url: TEST_PG_URL, schema, log: 'f' })), schema).toBe(
          'CFG_FLOW_INVALID',
        );
      }
      const schema = testSchema();
      schemas.push(schema);
      await (await openStore({ schema })).close();
      const client = await rawClient();
      await client.query(`INSERT INTO ${schema}.audit_schema_version (version) VALUES (99)`);
      expect(await codeOf(openStore({ schema }))).toBe('STORE_NEWER_SCHEMA');
    });

    it('keeps two trails of one schema apart: each has its own log id, size, checkpoints and verifies', async () => {
      const schema = testSchema();
      schemas.push(schema);
      const keys = await testKeys();
      const options = { signer: keys.signer, jwks: keys.jwks, checkpointEvery: 5, clock: () => NOW };
      const a = await AuditLog.open({ ...options, store: await openStore({ schema, log: 'flow-a' }) });
      const b = await AuditLog.open({ ...options, store: await openStore({ schema, log: 'flow-b' }) });
      await a.append(events.slice(0, 12));
      await b.append(events.slice(0, 3));
      await a.append(events.slice(12, 20));
      expect(a.logId).not.toBe(b.logId);
      expect(await a.verify()).toMatchObject({ ok: true, size: 20, checkpoints: 2 });
      expect(await b.verify()).toMatchObject({ ok: true, size: 3, checkpoints: 0 });
      expect((await b.query({ limit: 100 })).entries.map((e) => e.seq)).toEqual([0, 1, 2]);
      // Pruning or tampering with one trail leaves the other alone.
      const tamper = pgTamper(await rawClient(), schema, 'flow-a');
      await tamper.unguard();
      await tamper.deleteEntry(4);
      expect((await a.verify()).firstBreak).toMatchObject({ kind: 'entry-missing', seq: 4 });
      expect((await b.verify()).ok).toBe(true);
      const again = await AuditLog.open({ ...options, store: await openStore({ schema, log: 'flow-b' }) });
      expect(again.logId).toBe(b.logId);
      expect(again.size).toBe(3);
    });

    it('two logs on two stores appending to one trail at once store every entry exactly once, in one chain', async () => {
      const schema = testSchema();
      schemas.push(schema);
      const keys = await testKeys();
      const options = { signer: keys.signer, jwks: keys.jwks, checkpointEvery: 7 };
      const a = await AuditLog.open({ ...options, store: await openStore({ schema }) });
      const b = await AuditLog.open({ ...options, store: await openStore({ schema }) });
      const mine = (writer: string, i: number) => ({
        ...(events[i % events.length] as (typeof events)[number]),
        batchId: `${writer}-${i}`,
      });
      const appends = (log: AuditLog, writer: string) =>
        Array.from({ length: 20 }, (_, i) => log.append([mine(writer, 2 * i), mine(writer, 2 * i + 1)]));
      const written = (await Promise.all([...appends(a, 'a'), ...appends(b, 'b')])).flat();
      expect(written.map((e) => e.seq).sort((x, y) => x - y)).toEqual(
        Array.from({ length: 80 }, (_, i) => i),
      );
      await a.checkpoint();
      const report = await b.verify();
      expect(report).toMatchObject({ ok: true, size: 80, entries: 80, sealedSize: 80 });
      const stored: string[] = [];
      for await (const entry of a.entries()) stored.push(entry.batchId as string);
      expect(stored.sort()).toEqual(
        ['a', 'b'].flatMap((w) => Array.from({ length: 40 }, (_, i) => `${w}-${i}`)).sort(),
      );
    });

    it('lets exactly one of several batches built on the same size land', async () => {
      const schema = testSchema();
      schemas.push(schema);
      const stores = await Promise.all(Array.from({ length: 5 }, () => openStore({ schema })));
      const head = await loadHead(stores[0] as PostgresAuditStore);
      const results = await Promise.allSettled(
        stores.map((store, i) => store.append(buildBatch(head, events.slice(i * 3, i * 3 + 3), NOW).batch)),
      );
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of results) {
        if (r.status === 'rejected')
          expect(isSluiceError(r.reason) && r.reason.code).toBe('AUDIT_CONCURRENT_APPEND');
      }
      expect(await stores[1]?.size()).toBe(3);
      const client = await rawClient();
      const count = await client.query(`SELECT count(*)::int AS n FROM ${schema}.audit_entries`);
      expect(count.rows[0]).toEqual({ n: 3 });
    });

    it('keeps the first of two checkpoints sealed at one size by two writers', async () => {
      const schema = testSchema();
      schemas.push(schema);
      const store = await openStore({ schema });
      await store.append(buildBatch(await loadHead(store), events.slice(0, 3), NOW).batch);
      await store.putCheckpoint({ treeSize: 3, jws: 'first.j.ws' });
      await (await openStore({ schema })).putCheckpoint({ treeSize: 3, jws: 'second.j.ws' });
      expect(await store.checkpoints()).toEqual([{ treeSize: 3, jws: 'first.j.ws' }]);
    });

    it('stores the canonical text as TEXT and the hashes as BYTEA, and fills the searchable columns from it alone', async () => {
      const schema = testSchema();
      schemas.push(schema);
      const store = await openStore({ schema });
      const built = buildBatch(await loadHead(store), events.slice(0, 2), NOW);
      await store.append(built.batch);
      const client = await rawClient();
      const row = await client.query(
        `SELECT canonical, leaf_hash, subject, kind, at FROM ${schema}.audit_entries WHERE seq = 1`,
      );
      expect(row.rows[0]?.canonical).toBe(built.batch.entries[1]?.canonical);
      expect(
        Buffer.compare(row.rows[0]?.leaf_hash, Buffer.from(built.batch.entries[1]?.leafHash as Uint8Array)),
      ).toBe(0);
      expect(row.rows[0]).toMatchObject({ subject: built.entries[1]?.subject, kind: built.entries[1]?.kind });
      // A writer cannot make a row searchable under anything its canonical text does not say.
      await client.query(`INSERT INTO ${schema}.audit_entries (log, seq, canonical, leaf_hash, chain_hash, subject, kind)
          VALUES ('x', 0, '{"kind":"said"}', '\\x00', '\\x00', 'forged', 'forged')`);
      await client.query(`INSERT INTO ${schema}.audit_entries (log, seq, canonical, leaf_hash, chain_hash, subject)
          VALUES ('x', 1, 'not json', '\\x00', '\\x00', 'forged')`);
      const forged = await client.query(
        `SELECT seq, subject, kind FROM ${schema}.audit_entries WHERE log = 'x' ORDER BY seq`,
      );
      expect(forged.rows).toEqual([
        { seq: '0', subject: null, kind: 'said' },
        { seq: '1', subject: null, kind: null },
      ]);
      await expect(client.query(`TRUNCATE ${schema}.audit_entries`)).rejects.toThrow(/append-only/);
    });

    const ALL = { order: 'asc', limit: 1000 } as const;
    it('upgrades tables of version 1 (generated columns): old rows stay searchable, new rows are filled', async () => {
      const schema = testSchema();
      schemas.push(schema);
      const client = await rawClient();
      await client.query(`CREATE SCHEMA ${schema}`);
      await client.query(auditMigrations(schema)[0] as string);
      await client.query(
        `CREATE TABLE ${schema}.audit_schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`,
      );
      await client.query(`INSERT INTO ${schema}.audit_schema_version (version) VALUES (1)`);
      await client.query(`INSERT INTO ${schema}.audit_logs (log, log_id) VALUES ('earlier', 'earlier-id')`);
      await client.query(
        `INSERT INTO ${schema}.audit_entries (log, seq, canonical, leaf_hash, chain_hash) VALUES ('earlier', 0, $1, '\\x00', '\\x00')`,
        [JSON.stringify({ at: '2025-02-01T00:00:00.000Z', kind: 'send', subject: 'p-earlier' })],
      );

      const earlier = await openStore({ schema, log: 'earlier' });
      const store = await openStore({ schema });
      const versions = await client.query(`SELECT version FROM ${schema}.audit_schema_version ORDER BY 1`);
      expect(versions.rows).toEqual([{ version: 1 }, { version: 2 }]);
      const generated = await client.query(
        `SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'audit_entries' AND is_generated <> 'NEVER'`,
        [schema],
      );
      expect(generated.rows).toEqual([]);
      expect((await earlier.search({ subject: 'p-earlier', ...ALL })).map((r) => Number(r.seq))).toEqual([0]);
      expect(
        await earlier.search({ kinds: ['send'], from: '2025-01-01T00:00:00.000Z', ...ALL }),
      ).toHaveLength(1);

      const keys = await testKeys();
      const log = await AuditLog.open({ store, signer: keys.signer, jwks: keys.jwks, clock: () => NOW });
      await log.append(events.slice(0, 8));
      const subject = events.find((e) => e.subject !== undefined)?.subject as string;
      const found = await store.search({ subject, ...ALL });
      expect(found.length).toBe(events.slice(0, 8).filter((e) => e.subject === subject).length);
      expect(found.length).toBeGreaterThan(0);
      expect(await store.search({ subject: 'p-earlier', ...ALL })).toEqual([]);
      expect(await log.verify()).toMatchObject({ ok: true, size: 8 });
    });

    it('names the server but never the password when it cannot connect', async () => {
      const url = 'postgres://sluice:s3cr%3Et-pw@127.0.0.1:1/clinical';
      const err = await PostgresAuditStore.open({ url, schema: 'sluice', log: 'epic-to-veeva' }).catch(
        (e: unknown) => e,
      );
      expect(isSluiceError(err) && err.code).toBe('STORE_OPEN_FAILED');
      const text = `${(err as Error).message} ${JSON.stringify(err)} ${String((err as Error).cause ?? '')}`;
      expect(text).toContain('127.0.0.1:1/clinical');
      expect(text).not.toMatch(/s3cr/);
    });
  });
});
