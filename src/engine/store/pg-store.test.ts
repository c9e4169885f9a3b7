import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SluiceError } from '../../core/errors/index.ts';
import { dropSchemas, PG_SKIP, TEST_PG_URL, testSchema } from '../../testkit/postgres.ts';
import { PG_MIGRATIONS } from './pg-migrations.ts';
import { PostgresStateStore } from './pg-store.ts';
import {
  type ContractOpenOptions,
  type ContractStore,
  consentPage,
  stateStoreContract,
} from './state-store.contract.ts';

const schemas: string[] = [];
/** Stores opened here, closed after each test (a failed one leaves its store open). */
const opened: PostgresStateStore[] = [];
afterEach(async () => {
  for (const store of opened.splice(0)) await store.close();
  await dropSchemas(schemas.splice(0));
});
afterAll(async () => {
  await dropSchemas(schemas.splice(0));
});

/** A schema of this test's, dropped after it. */
function freshSchema(): string {
  const schema = testSchema('sluice_state');
  schemas.push(schema);
  return schema;
}

async function openStore(schema: string, options: ContractOpenOptions = {}): Promise<PostgresStateStore> {
  const store = await PostgresStateStore.open({ url: TEST_PG_URL, schema, ...options });
  opened.push(store);
  return store;
}

/** Runs `read` on a connection of the test's own. */
async function raw<T>(read: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: TEST_PG_URL });
  await client.connect();
  try {
    return await read(client);
  } finally {
    await client.end();
  }
}

/** PostgreSQL for the shared contract: a schema of its own per store (reopened by name). */
function postgresEngine() {
  const openIn = async (schema: string, options: ContractOpenOptions = {}): Promise<ContractStore> =>
    Object.assign(await openStore(schema, options), {
      reopen: (again?: ContractOpenOptions) => openIn(schema, again),
      storedPayloads: () =>
        raw(async (client) => {
          const { rows } = await client.query<{ payload: string }>(
            `SELECT payload FROM ${schema}.quarantine UNION ALL SELECT payload FROM ${schema}.change_log`,
          );
          return rows.map((r) => r.payload);
        }),
      storedFacts: (entity: string) =>
        raw(async (client) => {
          const { rows } = await client.query<{ facts: string }>(
            `SELECT facts FROM ${schema}.provenance_facts WHERE entity = $1 ORDER BY seq`,
            [entity],
          );
          return rows.map((r) => r.facts);
        }),
      insertProvenanceResource: (row: {
        flow: string;
        entity: string;
        runId: string;
        recordedAt: string;
        resource: string;
      }) =>
        raw(async (client) => {
          await client.query(
            `INSERT INTO ${schema}.provenance (flow, entity, run_id, recorded_at, resource) VALUES ($1, $2, $3, $4, $5)`,
            [row.flow, row.entity, row.runId, row.recordedAt, row.resource],
          );
        }),
    });
  return (options?: ContractOpenOptions) => openIn(freshSchema(), options);
}

const ledgerEntry = (externalId: string) => ({
  flow: 'f',
  object: 'Account',
  externalId,
  payloadHash: 'h1',
  targetId: `id-${externalId}`,
  sourceRef: `Organization/${externalId}`,
  mappingVersion: 'm1',
  runId: 'r1',
  deliveredAt: '2026-11-23T00:00:00.000Z',
});

/** Everything an error shows, its cause and details included. */
const shown = (err: unknown): string =>
  `${inspect(err, { depth: 8 })}\n${JSON.stringify(err)}\n${String((err as Error).cause)}`;

describe.skipIf(PG_SKIP !== undefined)('PostgresStateStore', () => {
  stateStoreContract('postgres', postgresEngine());

  describe('PostgreSQL only', () => {
    it('creates its schema and migrates it; opening again applies nothing twice', async () => {
      const schema = freshSchema();
      const store = await openStore(schema);
      expect(store.kind).toBe('postgres');
      expect(store.schema).toBe(schema);
      await store.close();
      await store.close();
      await (await openStore(schema)).close();
      const versions = await raw(
        async (client) =>
          (
            await client.query<{ version: string }>(
              `SELECT version FROM ${schema}.schema_version ORDER BY version`,
            )
          ).rows,
      );
      expect(versions.map((v) => Number(v.version))).toEqual(PG_MIGRATIONS.map((_, i) => i + 1));
      // Sealed record copies do not compress: stored out of line without the attempt.
      const storage = await raw(
        async (client) =>
          (
            await client.query<{ table: string; storage: string }>(
              `SELECT c.relname AS table, a.attstorage AS storage FROM pg_attribute a
                 JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = $1 AND a.attname = 'payload' ORDER BY 1`,
              [schema],
            )
          ).rows,
      );
      expect(storage).toEqual([
        { table: 'change_log', storage: 'e' },
        { table: 'quarantine', storage: 'e' },
      ]);
    });

    it('lets two processes open the same fresh schema at once: one migrates, the other waits', async () => {
      const schema = freshSchema();
      const stores = await Promise.all([openStore(schema), openStore(schema), openStore(schema)]);
      for (const [i, store] of stores.entries()) {
        await store.commitPage({ ledger: [ledgerEntry(`e${i}`)], quarantine: [] });
      }
      expect(await stores[0]?.countLedger('f')).toBe(3);
      const versions = await raw(
        async (client) => (await client.query(`SELECT version FROM ${schema}.schema_version`)).rows.length,
      );
      expect(versions).toBe(PG_MIGRATIONS.length);
    });

    it('opens a schema another opener (the audit store) creates at the same moment', async () => {
      const schema = freshSchema();
      const other = new pg.Client({ connectionString: TEST_PG_URL });
      await other.connect();
      try {
        await other.query('BEGIN');
        await other.query(`CREATE SCHEMA ${schema}`);
        const opening = openStore(schema);
        // The store finds no schema yet, and waits on the other's creation to end.
        await new Promise((resolve) => setTimeout(resolve, 500));
        await other.query('COMMIT');
        const store = await opening;
        await store.commitPage({ ledger: [ledgerEntry('a')], quarantine: [] });
        expect(await store.countLedger('f')).toBe(1);
      } finally {
        await other.end();
      }
    });

    it('uses a schema made for it without creating one', async () => {
      const schema = freshSchema();
      await raw((client) => client.query(`CREATE SCHEMA ${schema}`));
      const store = await openStore(schema);
      await store.commitPage({ ledger: [ledgerEntry('a')], quarantine: [] });
      expect(await store.countLedger('f')).toBe(1);
    });

    it('keeps flows of two schemas apart', async () => {
      const [one, two] = [await openStore(freshSchema()), await openStore(freshSchema())];
      await one?.commitPage({ ledger: [ledgerEntry('a')], quarantine: [] });
      expect(await one?.countLedger('f')).toBe(1);
      expect(await two?.countLedger('f')).toBe(0);
    });

    it('migrates a schema of step 1 holding consents and checkpoints: both read as before', async () => {
      const schema = freshSchema();
      // A schema as the first release of cluster mode left it, with a consent and a checkpoint.
      await raw(async (client) => {
        await client.query(`CREATE SCHEMA ${schema}`);
        await client.query(`SET search_path TO ${schema}`);
        await client.query(PG_MIGRATIONS[0] as string);
        await client.query('CREATE TABLE schema_version (version BIGINT NOT NULL)');
        await client.query('INSERT INTO schema_version (version) VALUES (1)');
        await client.query(
          `INSERT INTO consent_states (flow, consent_key, subject, state, updated_at) VALUES
           ('f', 'c1', 's1', '{"n":1}', 'x'), ('f', 'c2', 's2', '{"n":2}', 'x')`,
        );
        await client.query(
          `INSERT INTO checkpoints (flow, stream, position, definition_hash, environment, run_id, updated_at)
           VALUES ('f', 'Patient', '2026-12-01T00:00:00.000Z', 'd', 'e', 'r', 'x')`,
        );
      });
      const store = await openStore(schema);
      const lookup = await store.consentLookup('f');
      expect([lookup.count(), lookup.statesOf('s2'), lookup.subjectOf('c1')]).toEqual([2, ['{"n":2}'], 's1']);
      expect(await store.getCheckpoint('f', 'Patient')).toEqual({
        flow: 'f',
        stream: 'Patient',
        position: '2026-12-01T00:00:00.000Z',
        definitionHash: 'd',
        environment: 'e',
        runId: 'r',
        updatedAt: 'x',
      });
    });

    it('refuses a schema written by a newer Sluice', async () => {
      const schema = freshSchema();
      await (await openStore(schema)).close();
      await raw((client) =>
        client.query(`INSERT INTO ${schema}.schema_version (version) VALUES ($1)`, [
          PG_MIGRATIONS.length + 1,
        ]),
      );
      const error = await openStore(schema).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(SluiceError);
      expect((error as SluiceError).code).toBe('STORE_NEWER_SCHEMA');
      expect((error as SluiceError).details).toMatchObject({ schema, version: PG_MIGRATIONS.length + 1 });
    });

    it.each(['Sluice', '1abc', 'a-b', 'sluice; DROP SCHEMA public', '"quoted"', '', `s${'x'.repeat(63)}`])(
      'refuses the schema name %j before connecting',
      async (schema) => {
        const error = await PostgresStateStore.open({
          url: 'postgres://postgres:hunter2@127.0.0.1:1/test',
          schema,
        }).catch((err: unknown) => err);
        expect(error).toBeInstanceOf(SluiceError);
        expect((error as SluiceError).code).toBe('CFG_FLOW_INVALID');
        expect((error as SluiceError).message).toContain('schema name');
      },
    );

    it('names host, port and database of an unreachable server, never the password', async () => {
      const password = 'pa55-w0rd-never-shown';
      const error = await PostgresStateStore.open({
        url: `postgres://sluice:${password}@127.0.0.1:1/clinical?sslmode=disable`,
        schema: 'sluice',
      }).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(SluiceError);
      const failure = error as SluiceError;
      expect(failure.code).toBe('STORE_OPEN_FAILED');
      expect(failure.message).toContain('127.0.0.1:1/clinical');
      expect(failure.details).toEqual({
        host: '127.0.0.1',
        port: '1',
        database: 'clinical',
        schema: 'sluice',
      });
      expect(shown(failure)).not.toContain(password);
      expect(shown(failure)).not.toContain('sluice:');
    });

    it('keeps the password out of a failed login', async () => {
      const password = 'Wr0ng%2Fpassword';
      const error = await PostgresStateStore.open({
        url: TEST_PG_URL.replace('//postgres@', `//no_such_role_x:${password}@`),
        schema: 'sluice',
      }).catch((err: unknown) => err);
      expect((error as SluiceError).code).toBe('STORE_OPEN_FAILED');
      expect(shown(error)).not.toContain(password);
      expect(shown(error)).not.toContain(decodeURIComponent(password));
    });

    it('leaves nothing of a page that fails halfway, and shows no record in the error', async () => {
      const store = await openStore(freshSchema());
      const marker = 'Zebulon-Quixote-0451';
      const many = Array.from({ length: 300 }, (_, i) => `r${String(i).padStart(3, '0')}`);
      const error = await store
        .commitPage({
          flow: 'f',
          stream: 'Patient',
          ledger: many.map(ledgerEntry),
          seen: many.map((ref) => ({ ref, versionKey: 'v1', outcome: 'delivered' as const })),
          changeLog: many.map((ref) => ({ ref, versionKey: 'v1', payload: `{"name":"${marker}"}` })),
          consents: [{ key: 'c1', subject: 's1', state: '{}' }],
          quarantine: [
            {
              flow: 'f',
              runId: 'r1',
              stream: 'Patient',
              stage: 'validate',
              code: 'REC_INVALID_FHIR',
              issues: [],
              origin: 'page 1 record 1',
              payload: `{"name":"${marker}"}`,
            },
          ],
          // The last statement of the page fails: its batch has no purpose.
          batches: [
            {
              batchId: 'b1',
              flow: 'f',
              runId: 'r1',
              object: 'Account',
              createdAt: '2026-11-23T00:00:00.000Z',
              purpose: null as unknown as string,
              policyVersion: `${marker}-policy`,
              recordCount: 300,
              envelope: `{"name":"${marker}"}`,
              results: {},
            },
          ],
          checkpoint: {
            flow: 'f',
            stream: 'Patient',
            position: '2026-11-23T00:00:00Z',
            definitionHash: 'd',
            environment: 'e',
            runId: 'r1',
            updatedAt: '2026-11-23T00:00:00.000Z',
          },
        })
        .catch((err: unknown) => err);
      expect((error as SluiceError).code).toBe('STORE_WRITE_FAILED');
      expect(String((error as SluiceError).cause)).toContain('purpose');
      expect(shown(error)).not.toContain(marker);
      expect(await store.countLedger('f')).toBe(0);
      expect((await store.getSeen('f', 'Patient', many)).size).toBe(0);
      expect(await store.readChangeLog('f', 'Patient', undefined, 0, 10)).toEqual([]);
      expect(await store.listConsents('f')).toEqual([]);
      expect(await store.countQuarantine('f')).toBe(0);
      expect(await store.getCheckpoint('f', 'Patient')).toBeUndefined();
      // The connection went back to the pool fit for the next page.
      await store.commitPage({ flow: 'f', stream: 'Patient', ledger: many.map(ledgerEntry), quarantine: [] });
      expect(await store.countLedger('f')).toBe(300);
    });

    it('orders and compares text as bytes, whatever the collation of the database', async () => {
      const schema = freshSchema();
      await openStore(schema);
      const columns = await raw(
        async (client) =>
          (
            await client.query<{ table_name: string; column_name: string; collation_name: string | null }>(
              `SELECT table_name, column_name, collation_name FROM information_schema.columns
               WHERE table_schema = $1 AND data_type = 'text'`,
              [schema],
            )
          ).rows,
      );
      expect(columns.length).toBeGreaterThan(50);
      // JSON and record copies are never compared; every other text column is byte-ordered.
      const unordered = new Set([
        'issues',
        'payload',
        'state',
        'envelope',
        'jws',
        'results',
        'resource',
        'facts',
        'codes',
        'summary',
      ]);
      for (const c of columns) {
        if (!unordered.has(c.column_name))
          expect([c.table_name, c.column_name, c.collation_name]).toEqual([c.table_name, c.column_name, 'C']);
      }
    });

    it("mirrors a flow's consents in a directory only this user opens, removed when the store closes", async () => {
      const store = await openStore(freshSchema());
      await store.commitPage(consentPage('f', [{ key: 'c1', subject: 's1', state: '{"n":1}' }]));
      const tmp = mkdtempSync(join(tmpdir(), 'sluice-tmp-'));
      const before = process.env.TMPDIR;
      process.env.TMPDIR = tmp;
      try {
        const lookup = await store.consentLookup('f');
        expect(lookup.statesOf('s1')).toEqual(['{"n":1}']);
        const [mirror, ...more] = readdirSync(tmp);
        expect(more).toEqual([]);
        expect(mirror).toMatch(/^sluice-consents-/);
        expect(statSync(join(tmp, mirror as string)).mode & 0o777).toBe(0o700);
        await store.close();
        expect(readdirSync(tmp)).toEqual([]);
        // A mirror left by a process that died is removed by the next one; a running one's stays.
        mkdirSync(join(tmp, 'sluice-consents-999999999-dead'));
        mkdirSync(join(tmp, `sluice-consents-${process.ppid}-alive`));
        const next = await openStore(freshSchema());
        await next.consentLookup('f');
        expect(readdirSync(tmp).filter((d) => !d.startsWith(`sluice-consents-${process.pid}-`))).toEqual([
          `sluice-consents-${process.ppid}-alive`,
        ]);
        await next.close();
      } finally {
        if (before === undefined) delete process.env.TMPDIR;
        else process.env.TMPDIR = before;
        rmSync(tmp, { recursive: true, force: true });
      }
    });
  });
});
