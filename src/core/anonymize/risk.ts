import { z } from 'zod';
import { SluiceError } from '../errors/index.ts';
import { compileFhirPath } from '../policy/fhirpath.ts';

/**
 * Re-identification risk of a released dataset, measured on its quasi-identifier tuples (El Emam's
 * attacker models): records sharing the same tuple form an equivalence class of size f; an attacker who
 * knows a person is in the release (prosecutor) picks the right record with probability 1/f; one who
 * only knows the population (journalist) with 1/F, F being the class size in the population. A missing
 * value counts as its own value `*` (as after suppression).
 */

export type QiValue = string | number | boolean | null | undefined;
export type DataRecord = Readonly<Record<string, QiValue>>;

export interface RiskOptions {
  readonly quasiIdentifiers: readonly string[];
  /** The sensitive attribute, for l-diversity. */
  readonly sensitive?: string;
  /**
   * The population the release is drawn from (same columns), for journalist and marketer risk. Without
   * it the release is taken to be the whole population (F = f), the most cautious assumption.
   */
  readonly population?: readonly DataRecord[];
}

export interface RiskReport {
  readonly records: number;
  readonly quasiIdentifiers: readonly string[];
  /** Number of equivalence classes. */
  readonly classes: number;
  /** k-anonymity: the smallest class size (0 for an empty release). */
  readonly k: number;
  /** Records alone in their class. */
  readonly uniques: number;
  /** Prosecutor risk: highest 1/f, and the average over records (classes / records). */
  readonly prosecutor: { readonly max: number; readonly average: number };
  /** Journalist risk: highest 1/F over the released classes. */
  readonly journalist: { readonly max: number };
  /** Marketer risk: expected share of records re-identified by matching the whole release, Σ f/F / n. */
  readonly marketer: number;
  /** Distinct l-diversity: fewest distinct sensitive values in a class (when a sensitive attribute is set). */
  readonly l?: number;
  /** Entropy l-diversity: smallest exp(entropy of the sensitive values) over classes. */
  readonly entropyL?: number;
  /** Class size → number of classes of that size, ascending. */
  readonly classSizes: readonly (readonly [size: number, classes: number])[];
  readonly populationProvided: boolean;
}

export const SUPPRESSED_VALUE = '*';

function cell(value: QiValue): string {
  return value === null || value === undefined || value === '' ? SUPPRESSED_VALUE : String(value);
}

function tupleKey(record: DataRecord, columns: readonly string[]): string {
  return JSON.stringify(columns.map((c) => cell(record[c])));
}

export function assessRisk(records: readonly DataRecord[], options: RiskOptions): RiskReport {
  const qi = options.quasiIdentifiers;
  if (qi.length === 0) {
    throw new SluiceError('ANON_CONTEXT_INVALID', 'A risk assessment needs at least one quasi-identifier.');
  }
  const classes = new Map<string, { size: number; sensitive: Map<string, number> }>();
  for (const record of records) {
    const key = tupleKey(record, qi);
    const found = classes.get(key) ?? { size: 0, sensitive: new Map<string, number>() };
    found.size++;
    if (options.sensitive !== undefined) {
      const s = cell(record[options.sensitive]);
      found.sensitive.set(s, (found.sensitive.get(s) ?? 0) + 1);
    }
    classes.set(key, found);
  }
  const population = options.population && countTuples(options.population, qi);
  const n = records.length;
  let k = Number.POSITIVE_INFINITY;
  let minF = Number.POSITIVE_INFINITY;
  let uniques = 0;
  let marketerSum = 0;
  let l = Number.POSITIVE_INFINITY;
  let entropyL = Number.POSITIVE_INFINITY;
  const sizes = new Map<number, number>();
  for (const [key, cls] of classes) {
    k = Math.min(k, cls.size);
    if (cls.size === 1) uniques++;
    sizes.set(cls.size, (sizes.get(cls.size) ?? 0) + 1);
    const big = population ? (population.get(key) ?? 0) : cls.size;
    if (big < cls.size) {
      throw new SluiceError(
        'ANON_CONTEXT_INVALID',
        'The population table has fewer people in a quasi-identifier class than the release itself.',
        { details: { releaseClassSize: cls.size, populationClassSize: big } },
      );
    }
    minF = Math.min(minF, big);
    marketerSum += cls.size / big;
    if (options.sensitive !== undefined) {
      l = Math.min(l, cls.sensitive.size);
      let entropy = 0;
      for (const count of cls.sensitive.values()) {
        const p = count / cls.size;
        entropy -= p * Math.log(p);
      }
      entropyL = Math.min(entropyL, Math.exp(entropy));
    }
  }
  const empty = n === 0;
  return {
    records: n,
    quasiIdentifiers: [...qi],
    classes: classes.size,
    k: empty ? 0 : k,
    uniques,
    prosecutor: { max: empty ? 0 : 1 / k, average: empty ? 0 : classes.size / n },
    journalist: { max: empty ? 0 : 1 / minF },
    marketer: empty ? 0 : marketerSum / n,
    ...(options.sensitive === undefined ? {} : { l: empty ? 0 : l, entropyL: empty ? 0 : entropyL }),
    classSizes: [...sizes.entries()].sort((a, b) => a[0] - b[0]),
    populationProvided: population !== undefined,
  };
}

function countTuples(records: readonly DataRecord[], columns: readonly string[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const record of records) {
    const key = tupleKey(record, columns);
    out.set(key, (out.get(key) ?? 0) + 1);
  }
  return out;
}

/** The thresholds a flow sets for a release; any one broken refuses the release. */
export const RiskThresholdsSchema = z.strictObject({
  minK: z.int().min(1).optional(),
  maxProsecutorRisk: z.number().gt(0).max(1).optional(),
  maxAverageRisk: z.number().gt(0).max(1).optional(),
  maxJournalistRisk: z.number().gt(0).max(1).optional(),
  maxMarketerRisk: z.number().gt(0).max(1).optional(),
  minL: z.int().min(1).optional(),
  maxUniques: z.int().min(0).optional(),
});
export type RiskThresholds = z.infer<typeof RiskThresholdsSchema>;

export interface RiskViolation {
  readonly threshold: keyof RiskThresholds;
  readonly limit: number;
  readonly actual: number;
}

/** Every threshold the report breaks (empty: the release may go). An empty release breaks none. */
export function checkRisk(report: RiskReport, thresholds: RiskThresholds): RiskViolation[] {
  if (thresholds.minL !== undefined && report.l === undefined) {
    throw new SluiceError(
      'ANON_CONTEXT_INVALID',
      'minL is set but the risk assessment names no sensitive attribute.',
    );
  }
  if (report.records === 0) return [];
  const out: RiskViolation[] = [];
  const atLeast = (threshold: keyof RiskThresholds, limit: number | undefined, actual: number): void => {
    if (limit !== undefined && actual < limit) out.push({ threshold, limit, actual });
  };
  const atMost = (threshold: keyof RiskThresholds, limit: number | undefined, actual: number): void => {
    if (limit !== undefined && actual > limit) out.push({ threshold, limit, actual });
  };
  atLeast('minK', thresholds.minK, report.k);
  atMost('maxProsecutorRisk', thresholds.maxProsecutorRisk, report.prosecutor.max);
  atMost('maxAverageRisk', thresholds.maxAverageRisk, report.prosecutor.average);
  atMost('maxJournalistRisk', thresholds.maxJournalistRisk, report.journalist.max);
  atMost('maxMarketerRisk', thresholds.maxMarketerRisk, report.marketer);
  atLeast('minL', thresholds.minL, report.l ?? 0);
  atMost('maxUniques', thresholds.maxUniques, report.uniques);
  return out;
}

/** Refuses a release that breaks a threshold: ANON_RISK_EXCEEDED with each failed threshold in the details. */
export function enforceRisk(report: RiskReport, thresholds: RiskThresholds): void {
  const violations = checkRisk(report, thresholds);
  if (violations.length === 0) return;
  const failed = violations.map((v) => `${v.threshold} (limit ${v.limit}, actual ${round(v.actual)})`);
  throw new SluiceError(
    'ANON_RISK_EXCEEDED',
    `Release refused: ${failed.join('; ')} over ${report.records} records and ${report.classes} classes.`,
    {
      details: {
        failed,
        records: report.records,
        classes: report.classes,
        k: report.k,
        quasiIdentifiers: report.quasiIdentifiers,
      },
    },
  );
}

function round(value: number): number {
  return Math.round(value * 10_000) / 10_000;
}

/**
 * Quasi-identifier tuples of released FHIR resources: one record per resource, one column per FHIRPath
 * expression (the first value, as text; none → missing).
 */
export function tuplesFromResources(
  resources: readonly object[],
  columns: Readonly<Record<string, string>>,
): DataRecord[] {
  const compiled = Object.entries(columns).map(([name, expr]) => [name, compileFhirPath(expr)] as const);
  return resources.map((resource) => {
    const record: Record<string, QiValue> = {};
    for (const [name, fn] of compiled) {
      const first = fn(resource)[0];
      record[name] =
        typeof first === 'string' || typeof first === 'number' || typeof first === 'boolean' ? first : null;
    }
    return record;
  });
}
