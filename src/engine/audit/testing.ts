import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { gunzipSync } from 'node:zlib';
import type { JSONWebKeySet, JWK } from 'jose';
import { type PseudonymKey, pseudonymize } from '../../core/anonymize/pseudonym.ts';
import { SAMPLE_DATA_DIR, sharedDataDir } from '../../testkit/data.ts';
import { type CheckpointSigner, createCheckpointSigner, generateCheckpointKey } from './checkpoint.ts';
import type { AuditEventInput, AuditKind, AuditOutcome } from './entry.ts';
import { AuditLog, type OpenAuditLogOptions } from './index.ts';

/** Test helpers for the audit trail: keys, a log on a raw database, and audit events from Synthea data. */

export const TEST_PSEUDONYM_KEY: PseudonymKey = { id: 'audit-test', secret: new Uint8Array(32).fill(42) };

export interface TestKeys {
  readonly signer: CheckpointSigner;
  readonly privateJwk: JWK;
  readonly jwks: JSONWebKeySet;
}

export async function testKeys(
  kid = 'audit-test-1',
  alg: 'Ed25519' | 'ES256' = 'Ed25519',
): Promise<TestKeys> {
  const { privateJwk, publicJwk } = await generateCheckpointKey(kid, alg);
  return { signer: await createCheckpointSigner(privateJwk), privateJwk, jwks: { keys: [publicJwk] } };
}

/** A log on an in-memory database the test keeps, so it can tamper with the rows. */
export async function openTestLog(
  options: Partial<OpenAuditLogOptions> & { keys?: TestKeys } = {},
): Promise<{ log: AuditLog; db: DatabaseSync; keys: TestKeys }> {
  const keys = options.keys ?? (await testKeys());
  const db = new DatabaseSync(':memory:');
  const log = await AuditLog.open({
    signer: keys.signer,
    jwks: keys.jwks,
    ...options,
    store: options.store ?? db,
  });
  return { log, db, keys };
}

/** Removes the append-only triggers, as an attacker with write access to the file would. */
export function dropAuditTriggers(db: DatabaseSync): void {
  const rows = db
    .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'audit_%'")
    .all() as {
    name: string;
  }[];
  for (const { name } of rows) db.exec(`DROP TRIGGER ${name}`);
}

export interface SyntheaPatient {
  readonly patientId: string;
  /** Clear-text values that must never reach the audit trail. */
  readonly phi: readonly string[];
  readonly resources: readonly { readonly resourceType: string; readonly id: string }[];
}

/** Patients from the Synthea bundles (the shared data set when present, else the in-repository sample). */
export function syntheaPatients(limit: number): SyntheaPatient[] {
  const dir = join(sharedDataDir() ?? SAMPLE_DATA_DIR, 'synthea', ...(sharedDataDir() ? ['bundles'] : []));
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.json.gz'))
    .sort()
    .slice(0, limit);
  return files.map((file) => {
    const bundle = JSON.parse(gunzipSync(readFileSync(join(dir, file))).toString('utf8')) as {
      entry?: { resource?: Record<string, unknown> }[];
    };
    const resources = (bundle.entry ?? [])
      .map((e) => e.resource)
      .filter(
        (r): r is Record<string, unknown> => typeof r?.resourceType === 'string' && typeof r.id === 'string',
      )
      .map((r) => ({ resourceType: r.resourceType as string, id: r.id as string, resource: r }));
    const patient = resources.find((r) => r.resourceType === 'Patient');
    if (!patient) throw new Error(`no Patient in ${file}`);
    const p = patient.resource as {
      name?: { given?: string[]; family?: string }[];
      birthDate?: string;
      telecom?: { value?: string }[];
      address?: { line?: string[]; postalCode?: string }[];
    };
    const phi = [
      patient.id,
      p.birthDate,
      ...(p.name ?? []).flatMap((n) => [n.family, ...(n.given ?? [])]),
      ...(p.telecom ?? []).map((t) => t.value),
      ...(p.address ?? []).flatMap((a) => [...(a.line ?? []), a.postalCode]),
      // Short digit runs (ZIP codes) are left out: they turn up inside hex hashes by chance.
    ].filter((v): v is string => typeof v === 'string' && v.length >= 4 && !/^\d{1,7}$/.test(v));
    return {
      patientId: patient.id,
      phi,
      resources: resources.map(({ resourceType, id }) => ({ resourceType, id })),
    };
  });
}

const KINDS: readonly AuditKind[] = ['access-decision', 'send', 'withhold', 'quarantine', 'send', 'send'];
const OUTCOMES: Readonly<Record<string, AuditOutcome>> = { withhold: 'denied', quarantine: 'minor-failure' };

/** Audit events a flow would record while moving these patients: one per resource, about the patient. */
export function syntheaAuditEvents(
  patients: readonly SyntheaPatient[],
  options: { flow?: string; runId?: string; start?: Date } = {},
): AuditEventInput[] {
  const start = options.start?.getTime() ?? Date.parse('2025-03-01T08:00:00Z');
  const out: AuditEventInput[] = [];
  patients.forEach((patient, p) => {
    const subject = pseudonymize(TEST_PSEUDONYM_KEY, 'epic', 'Patient', patient.patientId);
    patient.resources.forEach((resource, r) => {
      const kind = KINDS[(p + r) % KINDS.length] as AuditKind;
      out.push({
        at: new Date(start + out.length * 1000),
        kind,
        flow: options.flow ?? 'epic-to-veeva',
        runId: options.runId ?? 'run-0001',
        batchId: `batch-${p}-${Math.floor(r / 50)}`,
        recipient: 'veeva',
        purpose: 'TREAT',
        subject,
        outcome: OUTCOMES[kind] ?? 'success',
        ...(kind === 'quarantine' ? { reason: 'REC_INVALID_FHIR' } : {}),
        details: { resourceType: resource.resourceType, fields: 3 + (r % 5), consented: kind !== 'withhold' },
      });
    });
  });
  return out;
}
