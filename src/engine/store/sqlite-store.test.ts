import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { SluiceError } from '../../core/errors/index.ts';
import { buildProvenance, type ProvenanceFacts } from '../../core/fhir/provenance.ts';
import { syntheaPatients } from '../../core/matrix/testing.ts';
import { validateFast } from '../../core/validate/compiled/validate.ts';
import { SQLITE_MIGRATIONS } from './migrations.ts';
import { payloadKey } from './payload-cipher.ts';
import { SqliteStateStore } from './sqlite-store.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function path(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-store-'));
  dirs.push(dir);
  return join(dir, 'nested', 'state.sqlite');
}

const ledgerEntry = (externalId: string, hash = 'h1') => ({
  flow: 'f',
  object: 'Account',
  externalId,
  payloadHash: hash,
  targetId: `id-${externalId}`,
  sourceRef: `Organization/${externalId}`,
  mappingVersion: 'm1',
  runId: 'r1',
  deliveredAt: '2026-11-23T00:00:00.000Z',
});

/** A quarantine entry of flow `f`: a Patient that failed validation, with its record as `payload`. */
const invalidPatient = (payload: string) => ({
  flow: 'f',
  runId: 'r1',
  stream: 'Patient',
  stage: 'validate' as const,
  code: 'REC_INVALID_FHIR',
  issues: [],
  origin: 'page 1 record 1',
  payload,
});

/** A database at `path` as a Sluice of schema `version` left it (migrations up to it applied). */
function storeAtVersion(path: string, version: number): DatabaseSync {
  mkdirSync(dirname(path), { recursive: true });
  const db = new DatabaseSync(path);
  db.exec('CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT');
  for (const [i, step] of SQLITE_MIGRATIONS.slice(0, version).entries()) {
    db.exec(step);
    db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(i + 1);
  }
  return db;
}

describe('SqliteStateStore', () => {
  it('creates its folder, migrates, and uses WAL with full sync', async () => {
    const p = path();
    const store = SqliteStateStore.open(p);
    await store.close();
    const db = new DatabaseSync(p);
    expect((db.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode).toBe('wal');
    expect((db.prepare('SELECT max(version) AS v FROM schema_version').get() as { v: number }).v).toBe(
      SQLITE_MIGRATIONS.length,
    );
    db.close();
    // Opening again applies nothing twice.
    const again = SqliteStateStore.open(p);
    await again.close();
  });

  it('refuses a store written by a newer Sluice', async () => {
    const p = path();
    await SqliteStateStore.open(p).close();
    const db = new DatabaseSync(p);
    db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(SQLITE_MIGRATIONS.length + 1);
    db.close();
    let error: unknown;
    try {
      SqliteStateStore.open(p);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(SluiceError);
    expect((error as SluiceError).code).toBe('STORE_NEWER_SCHEMA');
  });

  it('keeps change-log times as UTC, so a replay window holds whatever zone the source wrote', async () => {
    const entry = (ref: string, lastUpdated: string) => ({
      ref,
      versionKey: `v:1|${lastUpdated}`,
      lastUpdated,
      payload: '{}',
    });
    // 01:00Z, 06:00Z and 23:00Z the day before, written three ways.
    const changeLog = [
      entry('Patient/west', '2026-10-31T20:00:00-05:00'),
      entry('Patient/utc', '2026-11-01T06:00:00Z'),
      entry('Patient/east', '2026-11-01T09:00:00+10:00'),
    ];
    const refsFrom = async (store: SqliteStateStore, from: string) =>
      (await store.readChangeLog('f', 'Patient', from, 0, 10)).map((e) => e.ref).sort();
    const fresh = SqliteStateStore.open(path());
    await fresh.commitPage({ flow: 'f', stream: 'Patient', ledger: [], quarantine: [], changeLog });
    // As text, `2026-10-31T20…` sorts before the bound and `2026-11-01T09…` after it.
    expect(await refsFrom(fresh, '2026-11-01T00:00:00Z')).toEqual(['Patient/utc', 'Patient/west']);
    expect(await refsFrom(fresh, '2026-11-01T05:00:00+05:00')).toEqual(['Patient/utc', 'Patient/west']);
    expect((await fresh.readChangeLog('f', 'Patient', undefined, 0, 10)).map((e) => e.lastUpdated)).toEqual([
      '2026-11-01T01:00:00.000Z',
      '2026-11-01T06:00:00.000Z',
      '2026-10-31T23:00:00.000Z',
    ]);
    await fresh.close();

    // A store written before (times kept as the source wrote them) is brought to UTC when opened.
    const p = path();
    const old = storeAtVersion(p, 9);
    const insert = old.prepare(
      `INSERT INTO change_log (flow, stream, ref, version_key, last_updated, payload, recorded_at)
       VALUES ('f', 'Patient', ?, ?, ?, '{}', '2026-11-02T00:00:00Z')`,
    );
    for (const c of changeLog) insert.run(c.ref, c.versionKey, c.lastUpdated);
    insert.run('Patient/unreadable', 'v:1|x', 'not a time');
    old.close();
    const migrated = SqliteStateStore.open(p);
    // A time that cannot be read is in every window (a replay re-sends idempotently; none is missed).
    expect(await refsFrom(migrated, '2026-11-01T00:00:00Z')).toEqual([
      'Patient/unreadable',
      'Patient/utc',
      'Patient/west',
    ]);
    const times = (await migrated.readChangeLog('f', 'Patient', undefined, 0, 10)).map((e) => e.lastUpdated);
    expect(times).toEqual([
      '2026-11-01T01:00:00.000Z',
      '2026-11-01T06:00:00.000Z',
      '2026-10-31T23:00:00.000Z',
      undefined,
    ]);
    await migrated.close();
  });

  it('commits ledger, quarantine and checkpoint together, and upserts the ledger', async () => {
    const store = SqliteStateStore.open(path());
    await store.commitPage({
      ledger: [ledgerEntry('a'), ledgerEntry('b')],
      quarantine: [
        {
          flow: 'f',
          runId: 'r1',
          stream: 'Organization',
          stage: 'validate',
          code: 'REC_INVALID_FHIR',
          issues: [
            { severity: 'error', code: 'REC_INVALID_FHIR', path: 'Organization.name', message: 'bad' },
          ],
          origin: 'page 1 entry 3',
          payload: '{}',
        },
      ],
      checkpoint: {
        flow: 'f',
        stream: 'Organization',
        position: '2026-11-23T00:00:00Z',
        definitionHash: 'd',
        environment: 'e',
        runId: 'r1',
        updatedAt: 'x',
      },
    });
    await store.commitPage({ ledger: [ledgerEntry('a', 'h2')], quarantine: [] });
    const ledger = await store.getLedger('f', 'Account', ['a', 'b', 'c']);
    expect([...ledger.keys()].sort()).toEqual(['a', 'b']);
    expect(ledger.get('a')?.payloadHash).toBe('h2');
    expect(await store.countQuarantine('f', 'open')).toBe(1);
    expect((await store.getCheckpoint('f', 'Organization'))?.position).toBe('2026-11-23T00:00:00Z');
    await store.close();
  });

  it('keeps refused removals with their attempts, and drops them when removed or delivered again', async () => {
    const store = SqliteStateStore.open(path());
    const refusal = (externalId: string, attemptedAt: string) => ({
      flow: 'f',
      object: 'Account',
      externalId,
      targetId: `id-${externalId}`,
      sourceRef: `Organization/${externalId}`,
      cause: 'source-deletion' as const,
      codes: ['DELETE_FAILED'],
      runId: 'r1',
      attemptedAt,
      nextAttemptAt: new Date(Date.parse(attemptedAt) + 60_000).toISOString(),
    });
    const t0 = '2026-12-07T00:00:00.000Z';
    const t1 = '2026-12-07T01:00:00.000Z';
    await store.commitPage({
      flow: 'f',
      stream: 'Organization',
      ledger: ['a', 'b', 'c'].map((id) => ledgerEntry(id)),
      quarantine: [],
      refusedRemovals: [refusal('a', t0), refusal('b', t0), refusal('c', t0)],
    });
    // Refused again: one more attempt, first refusal kept.
    await store.settleRefusedRemovals('f', { removed: [], refused: [{ ...refusal('a', t1), codes: ['X'] }] });
    expect(await store.countRefusedRemovals('f')).toEqual({ count: 3, oldest: t0 });
    expect(await store.listRefusedRemovals('f', { dueBy: '2026-12-07T00:30:00.000Z' })).toMatchObject([
      { externalId: 'b' },
      { externalId: 'c' },
    ]);
    const [a] = await store.listRefusedRemovals('f');
    expect(a).toMatchObject({
      externalId: 'a',
      attempts: 2,
      firstRefusedAt: t0,
      lastAttemptAt: t1,
      codes: ['X'],
    });
    // b is deleted by a later page, c delivered again: neither is to be removed any more.
    await store.commitPage({
      flow: 'f',
      stream: 'Organization',
      ledger: [],
      quarantine: [],
      ledgerDeletes: [{ object: 'Account', externalId: 'b' }],
      keptTargets: [{ object: 'Account', externalId: 'c' }],
    });
    expect((await store.listRefusedRemovals('f')).map((r) => r.externalId)).toEqual(['a']);
    // a is removed at last: its ledger row goes with it; another flow's rows are untouched.
    await store.settleRefusedRemovals('f', {
      removed: [{ object: 'Account', externalId: 'a' }],
      refused: [],
    });
    expect(await store.countRefusedRemovals('f')).toEqual({ count: 0 });
    expect((await store.getLedger('f', 'Account', ['a', 'b', 'c'])).size).toBe(1);
    await store.close();
  });

  it('rolls a failing page back entirely', async () => {
    const store = SqliteStateStore.open(path());
    const bad = { ...ledgerEntry('z'), payloadHash: null as unknown as string };
    await expect(store.commitPage({ ledger: [ledgerEntry('y'), bad], quarantine: [] })).rejects.toMatchObject(
      {
        code: 'STORE_WRITE_FAILED',
      },
    );
    expect(await store.countLedger('f')).toBe(0);
    await store.close();
  });

  it.each([false, true])('stamps a page with the store clock (commit thread: %s)', async (commitThread) => {
    const clock = '2020-01-02T03:04:05.000Z';
    const store = SqliteStateStore.open(path(), { commitThread, now: () => new Date(clock) });
    const entry = invalidPatient('{}');
    await store.commitPage({ flow: 'f', stream: 'Patient', ledger: [], quarantine: [entry] });
    await store.commitPage({
      flow: 'f',
      stream: 'Patient',
      ledger: [],
      quarantine: [{ ...entry, origin: 'page 2 record 1' }],
      recordedAt: '2021-05-06T07:08:09.000Z',
    });
    const stamped = (await store.listQuarantine({ flow: 'f' })).map((q) => [q.origin, q.createdAt]).sort();
    expect(stamped).toEqual([
      ['page 1 record 1', clock],
      ['page 2 record 1', '2021-05-06T07:08:09.000Z'],
    ]);
    await store.close();
  });

  it.each([false, true])(
    'seals quarantined records and change-log copies under the flow key (commit thread: %s)',
    async (commitThread) => {
      const [patient] = await syntheaPatients();
      const plain = JSON.stringify(patient);
      const family = String((patient?.name as { family?: string }[] | undefined)?.[0]?.family);
      const key = payloadKey(randomBytes(32), 'state-1');
      const p = path();
      const store = SqliteStateStore.open(p, { commitThread, payloadKey: key });
      const quarantined = invalidPatient(plain);
      await store.commitPage({
        flow: 'f',
        stream: 'Patient',
        ledger: [],
        quarantine: [quarantined],
        changeLog: [{ ref: `Patient/${String(patient?.id)}`, versionKey: 'v:1|x', payload: plain }],
      });
      // Read back whole under the key …
      const [entry] = await store.listQuarantine({ flow: 'f' });
      expect(entry?.payloadKept).toBe(true);
      expect(await store.readQuarantinePayload(String(entry?.id))).toBe(plain);
      expect((await store.readChangeLog('f', 'Patient', undefined, 0, 10)).map((e) => e.payload)).toEqual([
        plain,
      ]);
      await store.close();
      // … while nothing of the patient is in the database file or its WAL.
      const db = new DatabaseSync(p);
      const stored = [
        ...(db.prepare('SELECT payload FROM quarantine').all() as { payload: string }[]),
        ...(db.prepare('SELECT payload FROM change_log').all() as { payload: string }[]),
      ].map((r) => r.payload);
      db.close();
      expect(stored).toHaveLength(2);
      for (const value of stored) expect(value.startsWith('sluice-enc1:state-1:')).toBe(true);
      for (const file of [p, `${p}-wal`]) {
        const bytes = existsSync(file) ? readFileSync(file).toString('latin1') : '';
        expect(bytes.includes(family)).toBe(false);
      }
      // Without the key, or under another, no record reads; what was quarantined and why still lists.
      const locked = SqliteStateStore.open(p);
      expect(await locked.listQuarantine({ flow: 'f' })).toEqual([entry]);
      expect(await locked.getQuarantine(String(entry?.id))).toEqual(entry);
      await expect(locked.readQuarantinePayload(String(entry?.id))).rejects.toMatchObject({
        code: 'STATE_PAYLOAD_LOCKED',
      });
      await expect(locked.readChangeLog('f', 'Patient', undefined, 0, 10)).rejects.toMatchObject({
        code: 'STATE_PAYLOAD_LOCKED',
      });
      await locked.close();
      const other = SqliteStateStore.open(p, { payloadKey: payloadKey(randomBytes(32), 'state-2') });
      await expect(other.readQuarantinePayload(String(entry?.id))).rejects.toMatchObject({
        code: 'STATE_PAYLOAD_KEY_MISMATCH',
      });
      await other.close();
    },
  );

  it.each([false, true])(
    'erases the record when an entry is released or discarded, keeping its SHA-256 (commit thread: %s)',
    async (commitThread) => {
      const patients = (await syntheaPatients()).slice(0, 3);
      // The first record is larger than a database page: most of it lives in overflow pages.
      const div = `<div xmlns="http://www.w3.org/1999/xhtml">${'x'.repeat(12_000)}</div>`;
      const plains = patients.map((patient, i) =>
        JSON.stringify(i === 0 ? { ...patient, text: { status: 'generated', div } } : patient),
      );
      const ids = patients.map((patient) => String(patient.id));
      const closedAt = '2026-12-06T10:00:00.000Z';
      const p = path();
      const store = SqliteStateStore.open(p, { now: () => new Date(closedAt), commitThread });
      await store.commitPage({
        flow: 'f',
        stream: 'Patient',
        ledger: [],
        quarantine: plains.map(invalidPatient),
        recordedAt: closedAt,
      });
      const [released, discarded, open] = await store.listQuarantine({ flow: 'f' });
      if (!released || !discarded || !open) throw new Error('three entries expected');
      expect(released.payloadSha256).toBe(
        createHash('sha256')
          .update(plains[0] as string)
          .digest('hex'),
      );
      expect(await store.setQuarantineStatus(released.id, 'released')).toBe(true);
      expect(await store.setQuarantineStatus(discarded.id, 'discarded')).toBe(true);
      // A closed entry stays closed.
      expect(await store.setQuarantineStatus(discarded.id, 'released')).toBe(false);
      expect(await store.setQuarantineStatus('no-such-entry', 'discarded')).toBe(false);
      const after = await store.listQuarantine({ flow: 'f' });
      expect(after.map((e) => [e.status, e.payloadKept, e.closedAt])).toEqual([
        ['released', false, closedAt],
        ['discarded', false, closedAt],
        ['open', true, undefined],
      ]);
      expect(after.map((e) => e.payloadSha256)).toEqual([
        released.payloadSha256,
        discarded.payloadSha256,
        open.payloadSha256,
      ]);
      expect(await store.readQuarantinePayload(released.id)).toBeUndefined();
      expect(await store.readQuarantinePayload(discarded.id)).toBeUndefined();
      expect(await store.readQuarantinePayload(open.id)).toBe(plains[2]);
      await store.close();
      // The closed records are gone from the database file and its WAL, not just from the rows.
      const bytes = [p, `${p}-wal`]
        .map((file) => (existsSync(file) ? readFileSync(file).toString('latin1') : ''))
        .join('');
      expect(bytes.includes(ids[0] as string)).toBe(false);
      expect(bytes.includes('x'.repeat(1000))).toBe(false);
      expect(bytes.includes(ids[1] as string)).toBe(false);
      expect(bytes.includes(ids[2] as string)).toBe(true);
    },
  );

  it('supersedes the open entries of a record a later page processed, erasing their records', async () => {
    const [patient] = await syntheaPatients();
    const ref = `Patient/${String(patient?.id)}`;
    // Larger than a page; flow f's copy padded with 'z', flow g's with 'q'.
    const padded = (c: string) =>
      JSON.stringify({ ...patient, text: { status: 'generated', div: `<div>${c.repeat(12_000)}</div>` } });
    const held = { ...invalidPatient(padded('z')), sourceRef: ref };
    const p = path();
    const store = SqliteStateStore.open(p, { commitThread: true });
    await store.commitPage({ flow: 'f', stream: 'Patient', ledger: [], quarantine: [held] });
    // Another stream's record of the same id, and another flow, are not touched.
    await store.commitPage({
      flow: 'g',
      stream: 'Patient',
      ledger: [],
      quarantine: [{ ...held, flow: 'g', payload: padded('q') }],
    });
    // The next version is quarantined again in the same page that supersedes the first.
    await store.commitPage({
      flow: 'f',
      stream: 'Patient',
      ledger: [],
      quarantine: [{ ...held, payload: '{"resourceType":"Patient"}', origin: 'page 2 record 1' }],
      supersedes: [ref, 'Patient/unknown'],
    });
    await store.commitPage({
      flow: 'f',
      stream: 'Observation',
      ledger: [],
      quarantine: [],
      supersedes: [ref],
    });
    const entries = await store.listQuarantine({});
    expect(entries.map((e) => [e.flow, e.origin, e.status, e.payloadKept])).toEqual([
      ['f', 'page 1 record 1', 'superseded', false],
      ['g', 'page 1 record 1', 'open', true],
      ['f', 'page 2 record 1', 'open', true],
    ]);
    expect(entries[0]?.closedAt).toBeDefined();
    await store.close();
    const bytes = readFileSync(p).toString('latin1');
    expect(bytes.includes('z'.repeat(1000))).toBe(false);
    expect(bytes.includes('q'.repeat(1000))).toBe(true);
  });

  it('prunes change-log copies older than the cut, leaving no trace of them in the file', async () => {
    const [first, second] = await syntheaPatients();
    const div = `<div xmlns="http://www.w3.org/1999/xhtml">${'y'.repeat(12_000)}</div>`;
    const old = JSON.stringify({ ...first, text: { status: 'generated', div } });
    const p = path();
    const store = SqliteStateStore.open(p);
    const page = (ref: string, payload: string, recordedAt: string) =>
      store.commitPage({
        flow: 'f',
        stream: 'Patient',
        ledger: [],
        quarantine: [],
        changeLog: [{ ref, versionKey: 'v:1|x', payload }],
        recordedAt,
      });
    await page(`Patient/${String(first?.id)}`, old, '2026-10-01T00:00:00.000Z');
    await page(`Patient/${String(second?.id)}`, JSON.stringify(second), '2026-12-01T00:00:00.000Z');
    expect(await store.pruneChangeLog('f', '2026-11-01T00:00:00.000Z')).toBe(1);
    expect((await store.readChangeLog('f', 'Patient', undefined, 0, 10)).map((e) => e.ref)).toEqual([
      `Patient/${String(second?.id)}`,
    ]);
    await store.close();
    const bytes = readFileSync(p).toString('latin1');
    expect(bytes.includes(String(first?.id))).toBe(false);
    expect(bytes.includes('y'.repeat(1000))).toBe(false);
    expect(bytes.includes(String(second?.id))).toBe(true);
  });

  it('erases, when it opens a store of an earlier version, the records of entries closed before', async () => {
    const p = path();
    const old = storeAtVersion(p, 10);
    const insert = old.prepare(
      `INSERT INTO quarantine (id, flow, run_id, stream, stage, code, issues, origin, payload, created_at, status)
       VALUES (?, 'f', 'r1', 'Patient', 'validate', 'REC_INVALID_FHIR', '[]', 'page 1', ?, '2026-11-01T00:00:00Z', ?)`,
    );
    insert.run('q-open', '{"resourceType":"Patient","id":"kept"}', 'open');
    insert.run('q-released', '{"resourceType":"Patient","id":"gone-1"}', 'released');
    insert.run('q-discarded', '{"resourceType":"Patient","id":"gone-2"}', 'discarded');
    old.close();
    const store = SqliteStateStore.open(p);
    const entries = await store.listQuarantine({ flow: 'f' });
    expect(entries.map((e) => [e.id, e.payloadKept, e.payloadSha256])).toEqual([
      ['q-open', true, undefined],
      ['q-released', false, undefined],
      ['q-discarded', false, undefined],
    ]);
    expect(await store.readQuarantinePayload('q-open')).toBe('{"resourceType":"Patient","id":"kept"}');
    expect(await store.readQuarantinePayload('q-released')).toBeUndefined();
    await store.close();
  });

  it('reads record copies stored before a key was configured', async () => {
    const p = path();
    const before = SqliteStateStore.open(p);
    await before.commitPage({
      flow: 'f',
      stream: 'Patient',
      ledger: [],
      quarantine: [],
      changeLog: [{ ref: 'Patient/a', versionKey: 'v:1|x', payload: '{"resourceType":"Patient","id":"a"}' }],
    });
    await before.close();
    const after = SqliteStateStore.open(p, { payloadKey: payloadKey(randomBytes(32), 'state-1') });
    expect((await after.readChangeLog('f', 'Patient', undefined, 0, 10))[0]?.payload).toBe(
      '{"resourceType":"Patient","id":"a"}',
    );
    await after.close();
  });

  it('reads a batch of lookups from one snapshot, ends it on a throw and nests inside another', async () => {
    const p = path();
    const store = SqliteStateStore.open(p, { commitThread: true });
    await store.commitPage({
      flow: 'f',
      stream: 'Consent',
      ledger: [],
      quarantine: [],
      consents: [{ key: 'c1', subject: 's1', state: '{"n":1}' }],
    });
    const lookup = store.consentLookup('f');
    const other = new DatabaseSync(p, { timeout: 5000 });
    const addConsent = other.prepare(
      "INSERT INTO consent_states (flow, consent_key, subject, state, updated_at) VALUES ('f', ?, 's1', ?, 'x')",
    );
    // What another connection commits during the snapshot is seen only after it.
    const inside = lookup.snapshot(() => {
      const first = lookup.statesOf('s1');
      addConsent.run('c2', '{"n":2}');
      return { first, again: lookup.statesOf('s1'), nested: store.snapshot(() => lookup.count()) };
    });
    expect(inside).toEqual({ first: ['{"n":1}'], again: ['{"n":1}'], nested: 1 });
    expect(lookup.statesOf('s1').sort()).toEqual(['{"n":1}', '{"n":2}']);
    expect(() =>
      lookup.snapshot(() => {
        lookup.count();
        throw new Error('boom');
      }),
    ).toThrow('boom');
    // The snapshot ended with the throw: a later write is read at once, and the page commit is not blocked.
    addConsent.run('c3', '{"n":3}');
    expect(lookup.count()).toBe(3);
    await store.commitPage({ ledger: [ledgerEntry('b')], quarantine: [] });
    expect([...(await store.getLedger('f', 'Account', ['a', 'b'])).keys()]).toEqual(['b']);
    other.close();
    await store.close();
  });

  it('keeps provenance as facts and returns whole FHIR Provenance, older resource rows included', async () => {
    const p = path();
    const store = SqliteStateStore.open(p);
    const facts = (id: string, recorded: string, consent: boolean): ProvenanceFacts => ({
      id,
      recorded,
      flow: 'f',
      runId: 'r1',
      sourceSystem: 'epic',
      targetSystem: 'veeva',
      entity: 'pabcdefghijklmnopqrstuvwxyz234567',
      versionKey: 'v:3|2026-11-20T10:00:00.000Z',
      origin: 'export Patient.ndjson line 7',
      readAt: '2026-11-23T09:00:00.000Z',
      readBy: 'sluice-client',
      mappingVersion: 'patient@2',
      validation: 'valid',
      ...(consent ? { consent: { decision: 'permit', policy: 'p-1', basis: 'Consent/c1' } } : {}),
      anonymization: 'pseudonymised; birth year, ZIP3, gender only',
      batchId: 'b-1',
      purpose: 'TREAT',
      targets: [
        { object: 'Patient_Profile__c', externalId: 'pabcdefghijklmnopqrstuvwxyz234567' },
        { object: 'Address_vod__c', externalId: 'x-2' },
      ],
    });
    const second = facts('prov-2', '2026-11-23T09:05:00.000Z', true);
    await store.commitPage({
      flow: 'f',
      stream: 'Patient',
      ledger: [],
      quarantine: [],
      provenance: [second],
    });
    await store.commitPage({
      flow: 'f',
      stream: 'Patient',
      ledger: [],
      quarantine: [],
      provenance: [{ ...second, id: 'prov-other', entity: 'Organization/o1' }],
    });
    await store.close();
    // A row written as a whole resource by an earlier version of the store, before the facts.
    const older = buildProvenance(facts('prov-1', '2026-11-22T08:00:00.000Z', false));
    const db = new DatabaseSync(p);
    db.prepare(
      'INSERT INTO provenance (flow, entity, run_id, recorded_at, resource) VALUES (?, ?, ?, ?, ?)',
    ).run('f', second.entity, 'r0', '2026-11-22T08:00:00.000Z', JSON.stringify(older));
    // Facts are a few hundred bytes, not the resource.
    const stored = db.prepare('SELECT facts FROM provenance_facts WHERE entity = ?').get(second.entity) as {
      facts: string;
    };
    expect(stored.facts.length).toBeLessThan(JSON.stringify(buildProvenance(second)).length / 2);
    db.close();

    const reopened = SqliteStateStore.open(p);
    const out = await reopened.provenanceOf('f', second.entity);
    expect(out).toEqual([older, buildProvenance(second)]);
    for (const resource of out)
      expect(validateFast(resource).filter((i) => i.severity === 'error')).toEqual([]);
    expect(JSON.stringify(out[1])).toContain('"valueCode":"consent"');
    expect((await reopened.provenanceOf('f', 'Organization/o1')).map((r) => r.id)).toEqual(['prov-other']);
    expect(await reopened.provenanceOf('other-flow', second.entity)).toEqual([]);
    await reopened.close();
  });
});
