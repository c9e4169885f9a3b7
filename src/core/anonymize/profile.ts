import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { isSluiceError, SluiceError } from '../errors/index.ts';
import { compileFhirPath } from '../policy/fhirpath.ts';
import { compileMsConfig, isMsConfig } from './ms-compat/config.ts';
import { type RiskThresholds, RiskThresholdsSchema } from './risk.ts';
import { compileRuleSet, FAIL_CLOSED_DEFAULTS, keyOf, type RuleSet } from './rules.ts';
import { zip3Lists } from './zip3-lists.ts';

/**
 * Anonymization profiles: what one kind of recipient gets. A profile is a rule set (see rules.ts) plus
 * the restricted ZIP3 lists it generalises with, the release-risk check over its quasi-identifiers, and
 * for aggregate releases the tables it publishes. Profiles are data (config/anonymize/NAME.yaml, or any
 * file), validated in full: an invalid one is refused with every problem and its dotted key.
 */

/** The profiles shipped in config/anonymize, addressable by name. */
export const PROFILE_NAMES = ['safe-harbor', 'crm-follow-up', 'analytics'] as const;
export type ProfileName = (typeof PROFILE_NAMES)[number];

export const PROFILE_DIR = fileURLToPath(new URL('../../../config/anonymize/', import.meta.url));

const ColumnName = z.string().regex(/^[A-Za-z][A-Za-z0-9_]{0,63}$/, 'a column name: letters, digits, _');
const FhirPathText = z.string().min(1);

const RiskSection = z.strictObject({
  /** Column → FHIRPath over a released resource (first value, as text). */
  quasiIdentifiers: z.record(ColumnName, FhirPathText),
  /** Sensitive attributes, for distinct l-diversity: column → FHIRPath. */
  sensitive: z.record(ColumnName, FhirPathText).default({}),
  /** Only resources of this type are rows of the release table. */
  resourceType: z.string().min(1),
  thresholds: RiskThresholdsSchema.default({}),
});

const Dimension = z.union([
  FhirPathText,
  z.strictObject({ path: FhirPathText, bandWidth: z.int().min(1).max(100) }),
]);

const AggregationSection = z.strictObject({
  resourceType: z.string().min(1),
  /** Cells below k are hidden (HHS suggests 11), with complementary suppression. */
  k: z.int().min(2).default(11),
  dimensions: z.record(ColumnName, Dimension),
  tables: z.array(z.strictObject({ rows: ColumnName, cols: ColumnName.optional() })).min(1),
});

const ProfileExtrasSchema = z.object({
  restrictedZip3: z.array(z.string().min(1)).min(1).optional(),
  risk: RiskSection.optional(),
  aggregation: AggregationSection.optional(),
});

export interface ProfileRisk {
  readonly resourceType: string;
  readonly quasiIdentifiers: Readonly<Record<string, string>>;
  readonly sensitive: Readonly<Record<string, string>>;
  readonly thresholds: RiskThresholds;
}

export interface ProfileDimension {
  readonly path: string;
  readonly bandWidth?: number;
}

export interface ProfileAggregation {
  readonly resourceType: string;
  readonly k: number;
  readonly dimensions: Readonly<Record<string, ProfileDimension>>;
  readonly tables: readonly { readonly rows: string; readonly cols?: string }[];
}

export interface Profile {
  readonly name: string;
  /** The file it was read from, or `inline`. */
  readonly source: string;
  readonly ruleSet: RuleSet;
  /** Restricted ZIP3 list ids (config/restricted-zip3.json), recorded in every audit. */
  readonly restrictedZip3: readonly string[];
  readonly risk?: ProfileRisk;
  readonly aggregation?: ProfileAggregation;
  /**
   * A Microsoft FHIR Tools for Anonymization config (recognised by its `fhirPathRules`), validated: run it
   * with `MsAnonymizer` (ms-compat). Its `ruleSet` then releases nothing, so a caller that does not know
   * the format fails closed.
   */
  readonly msCompat?: { readonly document: unknown; readonly source: string };
}

const EXTRA_KEYS = ['restrictedZip3', 'risk', 'aggregation'] as const;

/** Validates a parsed profile; throws ANON_RULES_INVALID listing every problem with its dotted key. */
export function compileProfile(input: unknown, source = 'inline'): Profile {
  if (!isRecord(input)) throw invalid(source, ['(root): a profile is a mapping of keys']);
  const record = input;
  const ruleSetPart = Object.fromEntries(
    Object.entries(record).filter(([k]) => !(EXTRA_KEYS as readonly string[]).includes(k)),
  );
  const problems: string[] = [];
  let ruleSet: RuleSet | undefined;
  try {
    ruleSet = compileRuleSet(ruleSetPart, source);
  } catch (err) {
    if (!isSluiceError(err) || err.code !== 'ANON_RULES_INVALID') throw err;
    const listed = err.details.problems;
    problems.push(...(Array.isArray(listed) ? listed : [err.message]));
  }
  // Each section on its own, so one bad section does not hide the problems of another.
  const section = <T>(key: string, schema: z.ZodType<T>): T | undefined => {
    if (record[key] === undefined) return undefined;
    const parsed = schema.safeParse(record[key]);
    if (parsed.success) return parsed.data;
    for (const i of parsed.error.issues) problems.push(`${keyOf([key, ...i.path])}: ${i.message}`);
    return undefined;
  };
  const restrictedZip3 = section('restrictedZip3', ProfileExtrasSchema.shape.restrictedZip3);
  const risk = section('risk', RiskSection);
  const aggregation = section('aggregation', AggregationSection);
  const lists = zip3Lists();
  const rawLists = Array.isArray(record.restrictedZip3) ? record.restrictedZip3 : [];
  rawLists.forEach((id, i) => {
    if (typeof id === 'string' && !(id in lists)) {
      problems.push(`restrictedZip3[${i}]: unknown list ${id}; known: ${Object.keys(lists).join(', ')}`);
    }
  });
  if (record.restrictedZip3 === undefined && usesGeneralize(record)) {
    problems.push(
      'restrictedZip3: required, because the profile generalises (ZIP3 needs the restricted list)',
    );
  }
  // FHIRPath expressions are checked wherever they are strings, even inside a section with other problems.
  const checkPaths = (key: string, value: unknown, pick: (v: unknown) => unknown = (v) => v): void => {
    if (!isRecord(value)) return;
    for (const [name, raw] of Object.entries(value)) {
      const expr = pick(raw);
      if (typeof expr !== 'string' || expr === '') continue;
      try {
        compileFhirPath(expr);
      } catch (err) {
        const first = (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
        problems.push(`${key}.${name}: not a FHIRPath expression (${first})`);
      }
    }
  };
  const rawRisk = isRecord(record.risk) ? record.risk : {};
  checkPaths('risk.quasiIdentifiers', rawRisk.quasiIdentifiers);
  checkPaths('risk.sensitive', rawRisk.sensitive);
  const rawAggregation = isRecord(record.aggregation) ? record.aggregation : {};
  checkPaths('aggregation.dimensions', rawAggregation.dimensions, (d) => (isRecord(d) ? d.path : d));
  if (risk) {
    if (Object.keys(risk.quasiIdentifiers).length === 0) {
      problems.push('risk.quasiIdentifiers: name at least one quasi-identifier');
    }
    for (const name of Object.keys(risk.sensitive)) {
      if (name in risk.quasiIdentifiers) problems.push(`risk.sensitive.${name}: already a quasi-identifier`);
    }
    if (risk.thresholds.minL !== undefined && Object.keys(risk.sensitive).length === 0) {
      problems.push('risk.thresholds.minL: needs at least one risk.sensitive attribute');
    }
  }
  if (aggregation) {
    aggregation.tables.forEach((table, i) => {
      for (const side of ['rows', 'cols'] as const) {
        const name = table[side];
        if (name !== undefined && !(name in aggregation.dimensions)) {
          problems.push(`aggregation.tables[${i}].${side}: ${name} is not a declared dimension`);
        }
      }
    });
  }
  const data = { restrictedZip3, risk, aggregation };
  if (problems.length > 0 || !ruleSet) throw invalid(source, problems);
  return {
    name: ruleSet.id,
    source,
    ruleSet,
    restrictedZip3: data.restrictedZip3 ?? [],
    ...(data.risk ? { risk: data.risk } : {}),
    ...(data.aggregation
      ? {
          aggregation: {
            ...data.aggregation,
            dimensions: Object.fromEntries(
              Object.entries(data.aggregation.dimensions).map(([k, d]) => [
                k,
                typeof d === 'string' ? { path: d } : d,
              ]),
            ),
          },
        }
      : {}),
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Whether any default or rule of the raw profile generalises (read before validation, so it is reported too). */
function usesGeneralize(record: Record<string, unknown>): boolean {
  const methodOf = (ref: unknown): unknown => (isRecord(ref) ? ref.method : ref);
  const defaults = isRecord(record.defaults) ? Object.values(record.defaults) : [];
  const rules = Array.isArray(record.rules) ? record.rules : [];
  return [...defaults, ...rules].some((ref) => methodOf(ref) === 'generalize');
}

/** Whether a CLI argument names a shipped profile rather than a file. */
export function isProfileName(value: string): value is ProfileName {
  return (PROFILE_NAMES as readonly string[]).includes(value);
}

/**
 * Loads a profile by name (`safe-harbor`, `crm-follow-up`, `analytics`) or from a YAML/JSON file path.
 * A name that is neither a shipped profile nor an existing file is ANON_PROFILE_NOT_FOUND.
 */
export function loadProfile(nameOrPath: string): Profile {
  const path = isProfileName(nameOrPath) ? join(PROFILE_DIR, `${nameOrPath}.yaml`) : nameOrPath;
  if (!existsSync(path)) {
    throw new SluiceError(
      'ANON_PROFILE_NOT_FOUND',
      `No anonymization profile ${nameOrPath}: give one of ${PROFILE_NAMES.join(', ')} or a profile file.`,
      { details: { profile: nameOrPath, known: [...PROFILE_NAMES] } },
    );
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new SluiceError('CFG_FILE_MISSING', `Cannot read the anonymization profile ${path}.`, {
      cause: err,
      details: { file: path },
    });
  }
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (err) {
    const first = (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
    throw invalid(path, [`(root): not valid YAML or JSON: ${first}`]);
  }
  if (isMsConfig(data)) return msProfile(data, path);
  return compileProfile(data, path);
}

/** A Microsoft-format config as a profile: validated now (keys may still come from the environment later). */
function msProfile(document: unknown, source: string): Profile {
  compileMsConfig(document, source);
  const name = (source.split(/[\\/]/).pop() ?? source).replace(/\.json$/i, '');
  return {
    name,
    source,
    ruleSet: {
      id: name,
      version: 1,
      destination: 'ms-compat',
      purpose: 'Microsoft FHIR Tools for Anonymization config',
      resourceTypes: new Set<string>(),
      securityLabels: true,
      defaults: FAIL_CLOSED_DEFAULTS,
      rules: [],
    },
    restrictedZip3: [],
    msCompat: { document, source },
  };
}

function invalid(source: string, problems: readonly string[]): SluiceError {
  return new SluiceError(
    'ANON_RULES_INVALID',
    `The anonymization profile ${source} is invalid: ${problems.join('; ')}`,
    { details: { source, problems } },
  );
}
