import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readResourceFile } from '../../adapters/files/resource-files.ts';
import { pseudonymize } from '../../core/anonymize/pseudonym.ts';
import { isSluiceError } from '../../core/errors/index.ts';
import { SAMPLE_DATA_DIR } from '../../testkit/data.ts';
import type { AuditQuery } from './query.ts';
import {
  dropAuditTriggers,
  openTestLog,
  syntheaAuditEvents,
  syntheaPatients,
  TEST_PSEUDONYM_KEY,
} from './testing.ts';

const patients = syntheaPatients(3);
const events = syntheaAuditEvents(patients);
const subjects = patients.map((p) => pseudonymize(TEST_PSEUDONYM_KEY, 'epic', 'Patient', p.patientId));

async function loaded() {
  const opened = await openTestLog({ checkpointEvery: 0 });
  for (let i = 0; i < events.length; i += 200) await opened.log.append(events.slice(i, i + 200));
  return opened;
}

async function codeOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (err: unknown) => (isSluiceError(err) ? { code: err.code, message: err.message } : err),
  );
}

describe('audit search', () => {
  it('finds exactly the entries of one pseudonymous subject, batch, kind set and outcome', async () => {
    const { log } = await loaded();
    const expectSeqs = async (query: AuditQuery, predicate: (i: number) => boolean) => {
      const seqs = [];
      for (let after: number | undefined; ; ) {
        const page = await log.query({ ...query, limit: 50, ...(after === undefined ? {} : { after }) });
        seqs.push(...page.entries.map((e) => e.seq));
        if (page.next === undefined) break;
        after = page.next;
      }
      expect(seqs).toEqual(events.map((_, i) => i).filter(predicate));
    };
    await expectSeqs({ subject: subjects[1] }, (i) => events[i]?.subject === subjects[1]);
    await expectSeqs({ batchId: 'batch-2-1' }, (i) => events[i]?.batchId === 'batch-2-1');
    await expectSeqs({ kind: ['withhold', 'quarantine'] }, (i) =>
      ['withhold', 'quarantine'].includes(events[i]?.kind ?? ''),
    );
    await expectSeqs(
      { outcome: 'denied', subject: subjects[0] },
      (i) => events[i]?.outcome === 'denied' && events[i]?.subject === subjects[0],
    );
    await expectSeqs({ flow: 'epic-to-veeva', recipient: 'veeva', runId: 'run-0001' }, () => true);
    await expectSeqs({ recipient: 'nobody' }, () => false);
  });

  it('finds the entries of one provider or organisation record by its source ref, never a patient record', async () => {
    const { log } = await loaded();
    // Real provider directory ids, sent and withheld as a flow records them.
    const ids: string[] = [];
    for await (const item of readResourceFile(join(SAMPLE_DATA_DIR, 'directory', 'Practitioner.ndjson.gz'))) {
      if (item.kind === 'resource') ids.push(String((item.resource as { id: unknown }).id));
      if (ids.length === 12) break;
    }
    const provider = ids.map((id, i) => ({
      kind: (i % 3 === 0 ? 'withhold' : 'send') as 'withhold' | 'send',
      flow: 'epic-to-veeva',
      runId: 'run-0002',
      recipient: 'veeva',
      outcome: 'success' as const,
      details: { stream: 'Practitioner', source: `Practitioner/${id}` },
    }));
    const stored = await log.append([...provider, ...provider.slice(0, 4)]);
    const wanted = `Practitioner/${ids[3]}`;
    const page = await log.query({ source: wanted, limit: 1000 });
    expect(page.entries.map((e) => e.seq)).toEqual(
      stored.filter((e) => e.details.source === wanted).map((e) => e.seq),
    );
    expect(page.entries).toHaveLength(2);
    expect(page.entries.map((e) => e.kind)).toEqual(['withhold', 'withhold']);
    expect((await log.query({ source: 'Practitioner/not-there' })).entries).toEqual([]);
    for (const source of ['Patient/123', 'has space', 'Practitioner/']) {
      expect(await codeOf(log.query({ source }))).toMatchObject({ code: 'AUDIT_QUERY_INVALID' });
    }
  });

  it('filters by time range (from inclusive, to exclusive) and pages backwards', async () => {
    const { log } = await loaded();
    const at = (i: number) => (events[i]?.at as Date | undefined)?.toISOString() ?? '';
    const page = await log.query({ from: at(10), to: at(20), limit: 1000 });
    expect(page.entries.map((e) => e.seq)).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
    expect(page.next).toBeUndefined();
    const newest = await log.query({ order: 'desc', limit: 3 });
    expect(newest.entries.map((e) => e.seq)).toEqual([
      events.length - 1,
      events.length - 2,
      events.length - 3,
    ]);
    const older = await log.query({ order: 'desc', limit: 3, after: newest.next as number });
    expect(older.entries.map((e) => e.seq)).toEqual([
      events.length - 4,
      events.length - 5,
      events.length - 6,
    ]);
  });

  it('returns entries with their hashes, as appended', async () => {
    const { log } = await openTestLog();
    const [stored] = await log.append([events[0]!]);
    const page = await log.query({ subject: subjects[0] });
    expect(page.entries).toEqual([stored]);
  });

  it('refuses invalid parameters, naming them without echoing the value', async () => {
    const { log } = await loaded();
    const bad: AuditQuery[] = [
      { subject: 'Dana Feest' },
      { from: '2025-02-30' },
      { from: '2025-03-02', to: '2025-03-01' },
      { limit: 0 },
      { limit: 5000 },
      { kind: [] },
      { kind: 'export' as never },
      { batchId: 'has space' },
    ];
    for (const query of bad) {
      const result = (await codeOf(log.query(query))) as { code: string; message: string };
      expect(result.code).toBe('AUDIT_QUERY_INVALID');
      expect(result.message).not.toMatch(/Dana|has space|2025/);
    }
  });

  it('refuses to hand out an entry whose stored text no longer matches its hash', async () => {
    const { log, db } = await loaded();
    dropAuditTriggers(db);
    db.prepare(
      'UPDATE audit_entries SET canonical = replace(canonical, \'"denied"\', \'"success"\') WHERE seq = 2',
    ).run();
    const result = (await codeOf(log.query({ limit: 10 }))) as { code: string };
    expect(result.code).toBe('AUDIT_INTEGRITY');
  });
});
