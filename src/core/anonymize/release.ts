import { SluiceError } from '../errors/index.ts';
import { compileFhirPath } from '../policy/fhirpath.ts';
import { aggregateOneWay, aggregateTwoWay, type OneWayTable, type TwoWayTable } from './aggregate.ts';
import type { ProfileAggregation, ProfileRisk } from './profile.ts';
import {
  assessRisk,
  checkRisk,
  type DataRecord,
  type QiValue,
  type RiskReport,
  type RiskThresholds,
  type RiskViolation,
  tuplesFromResources,
} from './risk.ts';

/**
 * Release checks over what a recipient would get: re-identification risk of a record-level stream over
 * its declared quasi-identifiers (with distinct l-diversity per declared sensitive attribute), and the
 * aggregate tables of an aggregate profile. Figures only: no value of a record leaves these functions
 * except inside equivalence-class counts.
 */

/** HHS suggests cells of at least 11; 0.09 is roughly 1/11 as a prosecutor risk. */
export const DEFAULT_RISK_THRESHOLDS: RiskThresholds = { minK: 11, maxProsecutorRisk: 0.09 };

export interface ReleaseRisk {
  readonly report: RiskReport;
  /** Distinct l-diversity per sensitive attribute (fewest distinct values in any class). */
  readonly l: Readonly<Record<string, number>>;
  /** Records whose own prosecutor risk (1 / class size) is above `maxProsecutorRisk`. */
  readonly recordsAtRisk: number;
  /** The risk limit `recordsAtRisk` was counted against. */
  readonly riskLimit: number;
  readonly thresholds: RiskThresholds;
  /** Every broken threshold; empty when the release may go. */
  readonly violations: readonly RiskViolation[];
  /** True when a threshold is broken: the batch is held, not sent. */
  readonly hold: boolean;
}

/** Risk of a table of rows over quasi-identifier columns, checked against thresholds. */
export function assessRelease(
  rows: readonly DataRecord[],
  quasiIdentifiers: readonly string[],
  thresholds: RiskThresholds,
  sensitive: readonly string[] = [],
): ReleaseRisk {
  const base = assessRisk(rows, { quasiIdentifiers });
  const l: Record<string, number> = {};
  for (const attribute of sensitive) {
    l[attribute] = assessRisk(rows, { quasiIdentifiers, sensitive: attribute }).l ?? 0;
  }
  const minL = sensitive.length === 0 ? undefined : Math.min(...Object.values(l));
  const report: RiskReport = minL === undefined ? base : { ...base, l: minL };
  const violations = checkRisk(report, thresholds);
  const riskLimit = thresholds.maxProsecutorRisk ?? DEFAULT_RISK_THRESHOLDS.maxProsecutorRisk ?? 0.09;
  let recordsAtRisk = 0;
  for (const [size, classes] of base.classSizes) if (1 / size > riskLimit) recordsAtRisk += size * classes;
  return { report, l, recordsAtRisk, riskLimit, thresholds, violations, hold: violations.length > 0 };
}

/** What `assessPatientProfileRisk` reads of a CRM write (a `TargetWrite` fits). */
export interface ProfileWrite {
  readonly object: string;
  readonly fields: Readonly<Record<string, unknown>>;
}

export interface PatientProfileRiskOptions {
  /** The CRM object of pseudonymous patient profiles (default `Patient_Profile__c`). */
  readonly object?: string;
  /** Default: `Birth_Year__c`, `Zip3__c`, `Gender__c` — what the CRM sees of a person. */
  readonly quasiIdentifiers?: readonly string[];
  /** Fields treated as sensitive attributes for distinct l-diversity. */
  readonly sensitive?: readonly string[];
}

export const PATIENT_PROFILE_QUASI_IDENTIFIERS = ['Birth_Year__c', 'Zip3__c', 'Gender__c'] as const;

/**
 * Re-identification risk of the patient profiles in a batch of CRM writes (other objects are ignored).
 * The pipeline holds the batch when `hold` is true, with the figures.
 */
export function assessPatientProfileRisk(
  writes: readonly ProfileWrite[],
  thresholds: RiskThresholds = DEFAULT_RISK_THRESHOLDS,
  options: PatientProfileRiskOptions = {},
): ReleaseRisk {
  const object = options.object ?? 'Patient_Profile__c';
  const qi = options.quasiIdentifiers ?? PATIENT_PROFILE_QUASI_IDENTIFIERS;
  const sensitive = options.sensitive ?? [];
  const columns = [...qi, ...sensitive];
  const rows = writes
    .filter((w) => w.object === object)
    .map((w) => Object.fromEntries(columns.map((c) => [c, qiValue(w.fields[c])])) as DataRecord);
  return assessRelease(rows, qi, thresholds, sensitive);
}

function qiValue(value: unknown): QiValue {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? value : null;
}

/** Risk of released FHIR resources under a profile's risk section (rows: resources of its type). */
export function assessProfileRisk(risk: ProfileRisk, resources: readonly object[]): ReleaseRisk {
  const rows = tuplesFromResources(
    resources.filter((r) => (r as { resourceType?: unknown }).resourceType === risk.resourceType),
    { ...risk.quasiIdentifiers, ...risk.sensitive },
  );
  return assessRelease(
    rows,
    Object.keys(risk.quasiIdentifiers),
    risk.thresholds,
    Object.keys(risk.sensitive),
  );
}

export type AggregateTable =
  | ({ readonly kind: 'one-way' } & OneWayTable)
  | ({ readonly kind: 'two-way' } & TwoWayTable);

/**
 * The tables of an aggregate profile over released resources, small cells and their complements hidden.
 * A banded dimension groups numbers (or the year of a date) into `low-high` ranges of its width.
 */
export function aggregateRelease(
  aggregation: ProfileAggregation,
  resources: readonly object[],
): AggregateTable[] {
  const columns = Object.entries(aggregation.dimensions).map(
    ([name, d]) => [name, compileFhirPath(d.path), d.bandWidth] as const,
  );
  const rows: DataRecord[] = resources
    .filter((r) => (r as { resourceType?: unknown }).resourceType === aggregation.resourceType)
    .map((resource) => {
      const row: Record<string, QiValue> = {};
      for (const [name, fn, width] of columns) {
        const first = fn(resource)[0];
        const value = typeof first === 'string' || typeof first === 'number' ? first : null;
        row[name] = width === undefined ? value : band(value, width);
      }
      return row;
    });
  return aggregation.tables.map((table) =>
    table.cols === undefined
      ? { kind: 'one-way' as const, ...aggregateOneWay(rows, table.rows, aggregation.k) }
      : { kind: 'two-way' as const, ...aggregateTwoWay(rows, table.rows, table.cols, aggregation.k) },
  );
}

/** `1965` (or `1965-03-02`) with width 10 → `1960-1969`; missing stays missing. */
export function band(value: string | number | null, width: number): string | null {
  if (value === null) return null;
  const n = typeof value === 'number' ? value : Number.parseInt(value.slice(0, 4), 10);
  if (!Number.isFinite(n)) {
    throw new SluiceError(
      'ANON_CONTEXT_INVALID',
      'A banded aggregation dimension holds a non-numeric value.',
      {
        details: { width },
      },
    );
  }
  const low = Math.floor(n / width) * width;
  return width === 1 ? String(low) : `${low}-${low + width - 1}`;
}
