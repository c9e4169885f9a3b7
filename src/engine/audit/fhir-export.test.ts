import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { validateResource } from '@medplum/core';
import type { AuditEvent } from '@medplum/fhirtypes';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadR4Definitions } from '../../core/fhir/definitions.ts';
import { SAMPLE_DATA_DIR, sharedDataDir } from '../../testkit/data.ts';
import { AUDIT_KINDS, type AuditEventInput, type StoredAuditEntry } from './entry.ts';
import { toAuditEvent } from './fhir-export.ts';
import { AuditLog } from './index.ts';
import { SqliteAuditStore } from './sqlite-audit-store.ts';
import type { AuditStore } from './store.ts';
import { openTestLog, syntheaAuditEvents, syntheaPatients, testKeys } from './testing.ts';

beforeAll(() => loadR4Definitions());

const patients = syntheaPatients(2);
const events = syntheaAuditEvents(patients);

describe('FHIR AuditEvent export', () => {
  it('exports a valid R4 AuditEvent for every kind of entry', async () => {
    const { log } = await openTestLog();
    const base = events[0] as AuditEventInput;
    const stored = await log.append(AUDIT_KINDS.map((kind) => ({ ...base, kind, reason: 'CODE_1' })));
    for (const entry of stored) {
      const event = toAuditEvent(entry, { site: 'test-site' });
      expect(() => validateResource(event), entry.kind).not.toThrow();
    }
  });

  it('maps a disclosure like the official disclosure example, with the pseudonym as what.identifier', async () => {
    const { log } = await openTestLog();
    const [entry] = (await log.append([{ ...(events[0] as AuditEventInput), kind: 'send' }])) as [
      StoredAuditEntry,
    ];
    const event = toAuditEvent(entry);
    const dir = sharedDataDir() ?? SAMPLE_DATA_DIR;
    const official = JSON.parse(
      readFileSync(join(dir, 'fhir-r4-examples', 'AuditEvent-example-disclosure.json'), 'utf8'),
    ) as AuditEvent;
    expect(event.type).toMatchObject({ system: official.type.system, code: official.type.code });
    expect(event.action).toBe(official.action);
    expect(event.outcome).toBe('0');
    expect(event.recorded).toBe(entry.at);
    const officialPurpose = official.purposeOfEvent?.[0]?.coding?.[0];
    expect(event.purposeOfEvent?.[0]?.coding?.[0]).toEqual({
      system: officialPurpose?.system,
      code: 'TREAT',
    });
    const roles = event.agent.map((a) => a.type?.coding?.[0]?.code);
    expect(roles).toEqual(official.agent.map((a) => a.type?.coding?.[0]?.code));
    expect(event.agent[1]?.who?.identifier?.value).toBe('veeva');
    expect(event.entity?.[0]).toMatchObject({
      what: { identifier: { system: 'urn:sluice:pseudonym', value: entry.subject } },
      type: { code: '1' },
    });
    expect(
      event.entity?.find((e) => e.what?.identifier?.system === 'urn:sluice:batch')?.what?.identifier?.value,
    ).toBe(entry.batchId);
    expect(event.entity?.at(-1)?.what?.identifier?.value).toBe(entry.leafHash);
    expect(event.subtype).toContainEqual({ system: 'urn:sluice:audit-kind', code: 'send' });
  });

  it('maps outcomes to 0/4/8/12 and denials to 8', async () => {
    const { log } = await openTestLog();
    const base = events[0] as AuditEventInput;
    const outcomes = ['success', 'minor-failure', 'serious-failure', 'major-failure', 'denied'] as const;
    const stored = await log.append(
      outcomes.map((outcome) => ({ ...base, kind: 'access-decision', outcome })),
    );
    expect(stored.map((e) => toAuditEvent(e).outcome)).toEqual(['0', '4', '8', '12', '8']);
    expect(toAuditEvent(stored[0] as StoredAuditEntry).type.code).toBe('110113');
  });

  it('streams NDJSON page by page and leaks no patient data', async () => {
    const keys = await testKeys();
    const inner = SqliteAuditStore.open(':memory:');
    let searches = 0;
    const counting = new Proxy(inner, {
      get(target, prop) {
        if (prop === 'search') {
          return (criteria: Parameters<AuditStore['search']>[0]) => {
            searches++;
            return target.search(criteria);
          };
        }
        const value: unknown = Reflect.get(target, prop);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const log = await AuditLog.open({ store: counting, signer: keys.signer, checkpointEvery: 0 });
    const many = Array.from({ length: 1200 }, (_, i) => events[i % events.length] as AuditEventInput);
    await log.append(many);
    const lines = log.exportFhir({ flow: 'epic-to-veeva' });
    const first = await lines.next();
    expect(searches).toBe(1);
    let text = first.value as string;
    let count = 1;
    for await (const line of lines) {
      text += line;
      count++;
    }
    expect(count).toBe(1200);
    expect(searches).toBe(3);
    const parsed = text
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as AuditEvent);
    expect(parsed.map((e) => e.id)).toEqual(many.map((_, i) => `sluice-audit-${i}`));
    for (const patient of patients) for (const value of patient.phi) expect(text).not.toContain(value);
  });
});
