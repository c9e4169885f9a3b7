/**
 * Stage throughput on one core: each record stage of the pipeline alone, over the lines of a generated
 * corpus, beside the baseline (bare JSON.parse + JSON.stringify of the same lines) measured right before
 * and right after it — so a noisy neighbour on a shared machine moves both, and the ratio stays
 * meaningful. Inputs of a stage are prepared outside its timing (a stage never pays for the previous one).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { JWK } from 'jose';
import { anonymize } from '../src/core/anonymize/index.ts';
import { loadProfile } from '../src/core/anonymize/profile.ts';
import type { PseudonymKey } from '../src/core/anonymize/pseudonym.ts';
import { buildEnvelope, type SigningKey, signEnvelope } from '../src/core/batch/index.ts';
import { ConsentStore } from '../src/core/consent/store.ts';
import { syntheticConsents, syntheticSubject } from '../src/core/consent/synthetic.ts';
import type { JsonObject } from '../src/core/fhir/resource.ts';
import { canonicalToVeeva, type TargetWrite } from '../src/core/mapping/canonical-to-veeva.ts';
import { fhirToCanonical } from '../src/core/mapping/fhir-to-canonical.ts';
import { createMatrixEngine } from '../src/core/matrix/engine.ts';
import type { SystemName } from '../src/core/model/ids.ts';
import { validateCanonical } from '../src/core/model/schemas.ts';
import { hasErrors, validateFast } from '../src/core/validate/compiled/validate.ts';
import { loadRestrictedZip3 } from '../src/engine/config/restricted-zip3.ts';
import { SqliteStateStore } from '../src/engine/store/sqlite-store.ts';
import type { LedgerEntry } from '../src/engine/store/state-store.ts';
import { REPO_ROOT } from '../src/testkit/data.ts';
import { type CorpusKind, generateCorpus } from './corpus.ts';
import { baselineRate } from './lib/baseline.ts';
import { progress, rate, round } from './lib/measure.ts';

export interface StageResult {
  readonly stage: string;
  readonly corpus: CorpusKind;
  /** What one item is: a resource, a patient record (consent), a ledger row (store). */
  readonly unit: string;
  readonly items: number;
  readonly perSec: number;
  /** parse + stringify of the same lines, per second, measured beside the stage. */
  readonly baselinePerSec: number;
  /** perSec / baselinePerSec. */
  readonly ratio: number;
  /** A sanity count for the stage (invalid resources, permits, suppressed…), so a broken input shows. */
  readonly note?: string;
}

/** A stage that could not be measured (e.g. its configuration does not load): reported, not fatal. */
export interface StageFailure {
  readonly stage: string;
  readonly corpus: CorpusKind;
  readonly error: string;
}

export type StageOutcome = StageResult | StageFailure;

export interface StageBenchOptions {
  /** Resources of the `flow` corpus (the example flow's types, as in the end-to-end runs). */
  readonly resources?: number;
  /** Resources of the `clinical` corpus (whole Synthea patients) for parse and validate. */
  readonly clinicalResources?: number;
  /** Minimum timed duration of each stage (the baseline gets half of it before and after). */
  readonly minMs?: number;
  /** Scratch folder (corpus files, the SQLite store); removed afterwards. */
  readonly workDir: string;
}

const SYSTEM = 'epic' as SystemName;
const VEEVA = {
  recordTypes: { hcp: '0128d0000005HcPAAU', hco: '0128d0000005HcOAAU' },
  patientProfileObject: 'Patient_Profile__c',
  lineageField: 'Sluice_Lineage__c',
} as const;
const CONSENT_PERSONS = 100_000;

function readLines(files: readonly string[]): string[] {
  return files.flatMap((f) => readFileSync(f, 'utf8').split('\n')).filter((l) => l !== '');
}

/** Runs one stage's measurement; a failure becomes a row with its error code instead of ending the run. */
async function guarded(
  stage: string,
  corpus: CorpusKind,
  measure: () => Promise<StageResult>,
): Promise<StageOutcome> {
  try {
    return await measure();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    const message = err instanceof Error ? err.message.split('\n', 1)[0] : String(err);
    progress(`stage ${stage} (${corpus}) failed: ${typeof code === 'string' ? code : message}`);
    return { stage, corpus, error: typeof code === 'string' ? `${code}: ${message}` : String(message) };
  }
}

const ROUNDS = 3;

/**
 * Times `pass` in three rounds, each between two baseline measurements over `baselineLines`; reports the
 * median round (by ratio), so one burst of load from a neighbour does not decide the figure.
 */
async function beside(
  name: string,
  corpus: CorpusKind,
  unit: string,
  items: number,
  baselineLines: readonly string[],
  pass: () => unknown,
  minMs: number,
  note?: string,
): Promise<StageResult> {
  progress(`stage ${name} (${corpus}, ${items} ${unit})`);
  // Warm-up: lets the JIT compile both before anything is timed.
  await baselineRate(baselineLines, 0);
  await rate(items, pass, 0);
  const slice = minMs / ROUNDS;
  const rounds: { perSec: number; baselinePerSec: number; ratio: number }[] = [];
  let before = await baselineRate(baselineLines, slice / 2);
  for (let r = 0; r < ROUNDS; r++) {
    const perSec = await rate(items, pass, slice);
    const after = await baselineRate(baselineLines, slice / 2);
    const baselinePerSec = (before + after) / 2;
    rounds.push({ perSec, baselinePerSec, ratio: perSec / baselinePerSec });
    before = after;
  }
  rounds.sort((a, b) => a.ratio - b.ratio);
  const median = rounds[Math.floor(ROUNDS / 2)] as (typeof rounds)[number];
  return {
    stage: name,
    corpus,
    unit,
    items,
    perSec: round(median.perSec),
    baselinePerSec: round(median.baselinePerSec),
    ratio: round(median.ratio, 3),
    ...(note === undefined ? {} : { note }),
  };
}

export async function benchStages(options: StageBenchOptions): Promise<StageOutcome[]> {
  const minMs = options.minMs ?? 1500;
  const work = join(options.workDir, 'stages');
  mkdirSync(work, { recursive: true });
  try {
    const flow = generateCorpus({
      dir: join(work, 'flow'),
      resources: options.resources ?? 50_000,
      kind: 'flow',
    });
    const clinical = generateCorpus({
      dir: join(work, 'clinical'),
      resources: options.clinicalResources ?? 50_000,
      kind: 'clinical',
    });
    return [
      ...(await flowStages(readLines(flow.files), work, minMs)),
      ...(await clinicalStages(readLines(clinical.files), minMs)),
    ];
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

async function clinicalStages(lines: readonly string[], minMs: number): Promise<StageOutcome[]> {
  const objects = lines.map((l) => JSON.parse(l) as JsonObject);
  const pseudonymKey: PseudonymKey = { id: 'bench', secret: randomBytes(32) };
  const restricted = loadRestrictedZip3(['hhs-2000'], []);
  return [
    await guarded('parse', 'clinical', () =>
      beside('parse', 'clinical', 'resources', lines.length, lines, () => parseAll(lines), minMs),
    ),
    await guarded('validate', 'clinical', () => validateStage('clinical', objects, lines, minMs)),
    await guarded('anonymize', 'clinical', () =>
      anonymizeStage('clinical', 'analytics', {
        objects,
        lines,
        pseudonymKey,
        restrictedZip3: restricted,
        minMs,
      }),
    ),
  ];
}

/** A corpus with what the pseudonymising stages need. */
interface KeyedCorpus {
  readonly objects: readonly JsonObject[];
  readonly lines: readonly string[];
  readonly pseudonymKey: PseudonymKey;
  readonly restrictedZip3: ReadonlySet<string>;
  readonly minMs: number;
}

/**
 * A shipped anonymization profile over the corpus: `crm-follow-up` on the flow corpus (it releases
 * Patients only), `analytics` on the clinical corpus (pseudonyms, date shifts, generalisation).
 */
function anonymizeStage(
  corpus: CorpusKind,
  profileName: 'crm-follow-up' | 'analytics',
  input: KeyedCorpus,
): Promise<StageResult> {
  const { objects, lines, pseudonymKey, restrictedZip3, minMs } = input;
  const profile = loadProfile(profileName);
  const ctx = {
    system: SYSTEM,
    asOf: new Date(),
    keyring: { currentKeyId: pseudonymKey.id, keys: [pseudonymKey] },
    restrictedZip3: { listIds: [...profile.restrictedZip3], prefixes: restrictedZip3 },
  };
  const released = objects.filter((o) => anonymize(o, profile.ruleSet, ctx).resource !== null).length;
  const pass = (): void => {
    for (const o of objects) anonymize(o, profile.ruleSet, ctx);
  };
  const note = `profile ${profileName}: ${released} of ${objects.length} released`;
  return beside('anonymize', corpus, 'resources', objects.length, lines, pass, minMs, note);
}

function parseAll(lines: readonly string[]): void {
  for (const line of lines) JSON.parse(line);
}

function validateStage(
  corpus: CorpusKind,
  objects: readonly JsonObject[],
  lines: readonly string[],
  minMs: number,
): Promise<StageResult> {
  const invalid = objects.filter((o) => hasErrors(validateFast(o))).length;
  const pass = (): void => {
    for (const o of objects) validateFast(o);
  };
  return beside('validate', corpus, 'resources', objects.length, lines, pass, minMs, `${invalid} invalid`);
}

interface Mapped {
  readonly writes: TargetWrite[];
  readonly subject?: string;
}

async function flowStages(lines: readonly string[], work: string, minMs: number): Promise<StageOutcome[]> {
  const objects = lines.map((l) => JSON.parse(l) as JsonObject);
  const pseudonymKey: PseudonymKey = { id: 'bench', secret: randomBytes(32) };
  const restricted = loadRestrictedZip3(['hhs-2000'], []);
  const asOf = new Date();
  const mapOne = (o: JsonObject): Mapped | undefined => {
    // As the pipeline does: verifiedAt is the moment each record is mapped.
    const mapped = fhirToCanonical(o, {
      system: SYSTEM,
      verifiedAt: new Date().toISOString(),
      asOf,
      pseudonymKey,
      restrictedZip3: restricted,
    });
    if (!mapped.ok) return undefined;
    const subject = mapped.value.kind === 'PatientProfile' ? mapped.value.pseudonym : undefined;
    return { writes: canonicalToVeeva(mapped.value, VEEVA), ...(subject === undefined ? {} : { subject }) };
  };
  const mapped = objects.map(mapOne);

  return [
    await guarded('parse', 'flow', () =>
      beside('parse', 'flow', 'resources', lines.length, lines, () => parseAll(lines), minMs),
    ),
    await guarded('validate', 'flow', () => validateStage('flow', objects, lines, minMs)),
    await guarded('map (core/mapping)', 'flow', () => {
      const failed = mapped.filter((m) => m === undefined).length;
      const pass = (): void => {
        for (const o of objects) mapOne(o);
      };
      const note = `${failed} not mappable`;
      return beside('map (core/mapping)', 'flow', 'resources', objects.length, lines, pass, minMs, note);
    }),
    await guarded('map (matrix)', 'flow', () =>
      matrixStage({ objects, lines, pseudonymKey, restrictedZip3: restricted, minMs }),
    ),
    await guarded('consent', 'flow', () => consentStage(lines, mapped, minMs)),
    await guarded('anonymize', 'flow', () =>
      anonymizeStage('flow', 'crm-follow-up', {
        objects,
        lines,
        pseudonymKey,
        restrictedZip3: restricted,
        minMs,
      }),
    ),
    await guarded('batch+sign', 'flow', () => batchStage(mapped, lines, minMs)),
    await guarded('store', 'flow', () => storeStage(mapped, lines, work, minMs)),
  ];
}

/**
 * The mapping as the pipeline runs it today (src/engine/pipeline/record-stages.ts): the mapping matrix
 * (config/mappings, FHIRPath rules) FHIR → canonical, the canonical schema check, canonical → Veeva.
 */
function matrixStage(input: KeyedCorpus): Promise<StageResult> {
  const { objects, lines, pseudonymKey, restrictedZip3, minMs } = input;
  const engine = createMatrixEngine();
  const asOf = new Date();
  const one = (o: JsonObject): boolean => {
    const base = { system: SYSTEM, verifiedAt: new Date().toISOString(), asOf };
    const mapped = engine.fhirToCanonical(o, { ...base, pseudonymKey, restrictedZip3 });
    if (!mapped.ok || !validateCanonical(mapped.value).ok) return false;
    const config = VEEVA as unknown as Record<string, unknown>;
    return engine.canonicalToVeeva(mapped.value, { ...base, system: 'veeva' as SystemName, config }).ok;
  };
  const failed = objects.filter((o) => !one(o)).length;
  const pass = (): void => {
    for (const o of objects) one(o);
  };
  return beside(
    'map (matrix)',
    'flow',
    'resources',
    objects.length,
    lines,
    pass,
    minMs,
    `${failed} not mappable`,
  );
}

/**
 * The send-time check for each patient record, with 100k persons loaded (about 1.8 consents each, the
 * synthetic population of src/core/consent/synthetic.ts); the corpus's patients are the first of them.
 */
function consentStage(
  lines: readonly string[],
  mapped: readonly (Mapped | undefined)[],
  minMs: number,
): Promise<StageResult> {
  const patientLines = lines.filter((_, i) => mapped[i]?.subject !== undefined);
  const subjects = mapped.flatMap((m) => (m?.subject === undefined ? [] : [m.subject]));
  const subjectOf = new Map(subjects.map((s, i) => [syntheticSubject(i), s] as const));
  const consents = new ConsentStore({ version: 'bench' });
  for (const c of syntheticConsents(Math.max(CONSENT_PERSONS, subjects.length), 42)) {
    consents.upsert({ ...c, subject: subjectOf.get(c.subject) ?? c.subject });
  }
  // The same request the pipeline's ConsentGate.check builds for the example flow.
  const request = {
    purpose: 'HOPERAT',
    recipient: { id: 'Organization/sluice-demo-crm', role: 'IRCP' },
    resourceType: 'Patient',
    at: new Date(),
  };
  const permits = subjects.filter((s) => consents.decide(s, request) === 'permit').length;
  const pass = (): void => {
    for (const s of subjects) consents.checkAtSend(s, request);
  };
  // The pipeline's request (ConsentGate.check) carries no security labels, so the synthetic privacy
  // consents' label denies apply (fail closed): expect few permits; the cost is what is measured.
  const note = `${permits} permit of ${subjects.length}; ${consents.subjectCount} persons loaded`;
  return beside('consent', 'flow', 'patients', subjects.length, patientLines, pass, minMs, note);
}

/** Every write of the mapped records, per object in batches of 200: envelope + ES256 JWS per batch. */
async function batchStage(
  mapped: readonly (Mapped | undefined)[],
  lines: readonly string[],
  minMs: number,
): Promise<StageResult> {
  const jwk = JSON.parse(
    readFileSync(join(REPO_ROOT, 'examples', 'keys', 'batch-signing-es256.private.jwk.json'), 'utf8'),
  ) as JWK;
  const key: SigningKey = { kid: String(jwk.kid), privateKey: jwk };
  const byObject = new Map<string, TargetWrite[]>();
  for (const m of mapped) {
    for (const w of m?.writes ?? []) {
      const list = byObject.get(w.object) ?? [];
      list.push(w);
      byObject.set(w.object, list);
    }
  }
  const batches: TargetWrite[][] = [];
  for (const writes of byObject.values()) {
    for (let i = 0; i < writes.length; i += 200) batches.push(writes.slice(i, i + 200));
  }
  const resources = mapped.filter((m) => m !== undefined).length;
  let sequence = 0;
  const pass = async (): Promise<void> => {
    for (const batch of batches) {
      const records = batch.map((w) => ({
        attributes: { type: w.object },
        [w.externalIdField]: w.externalId,
        ...w.fields,
      }));
      const envelope = buildEnvelope(
        {
          batchId: `bench-${sequence++}`,
          sourceSystem: 'epic',
          targetSystem: 'veeva',
          purpose: 'HOPERAT',
          consentPolicyVersion: 'no-consent-stage',
          createdAt: new Date(),
          resourceTypes: [batch[0]?.object ?? ''],
          items: batch.map((w) => ({
            sourceId: w.externalId,
            canonicalId: w.externalId,
            transformationVersion: 'bench',
            validationStatus: 'valid' as const,
          })),
        },
        records,
      );
      await signEnvelope(envelope, key, 'ES256');
    }
  };
  const writes = batches.reduce((n, b) => n + b.length, 0);
  return beside(
    'batch+sign',
    'flow',
    'resources',
    resources,
    lines,
    pass,
    minMs,
    `${writes} writes in ${batches.length} batches`,
  );
}

/** One ledger row per mapped resource, committed in pages of 200 (WAL, synchronous=FULL: one fsync each). */
async function storeStage(
  mapped: readonly (Mapped | undefined)[],
  lines: readonly string[],
  work: string,
  minMs: number,
): Promise<StageResult> {
  const store = SqliteStateStore.open(join(work, 'bench-state.sqlite'));
  try {
    const now = new Date().toISOString();
    const rows: LedgerEntry[] = mapped.flatMap((m) => {
      const w = m?.writes[0];
      if (m === undefined || w === undefined) return [];
      return [
        {
          flow: 'bench',
          object: w.object,
          externalId: w.externalId,
          payloadHash: randomBytes(32).toString('base64url'),
          targetId: `a00${randomBytes(6).toString('hex')}`,
          sourceRef: m.subject ?? w.externalId,
          mappingVersion: 'bench',
          runId: 'bench',
          deliveredAt: now,
        },
      ];
    });
    const pass = async (): Promise<void> => {
      for (let i = 0; i < rows.length; i += 200) {
        await store.commitPage({
          flow: 'bench',
          stream: 'bench',
          ledger: rows.slice(i, i + 200),
          quarantine: [],
        });
      }
    };
    return await beside(
      'store',
      'flow',
      'ledger rows',
      rows.length,
      lines,
      pass,
      minMs,
      'WAL, synchronous=FULL',
    );
  } finally {
    await store.close();
  }
}
