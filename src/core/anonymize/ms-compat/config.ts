import { randomUUID } from 'node:crypto';
import { compile } from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4';
import { SluiceError } from '../../errors/index.ts';
import { aesAlgorithm } from './algorithms.ts';

/**
 * The configuration format of Microsoft's FHIR Tools for Anonymization (`fhirVersion`, `processingErrors`,
 * `fhirPathRules`, `parameters`), validated as upstream's AnonymizerConfigurationValidator does — but every
 * problem is reported at once, with its rule index, instead of the first one only.
 */

export const MS_METHODS = [
  'keep',
  'redact',
  'dateshift',
  'cryptohash',
  'encrypt',
  'substitute',
  'perturb',
  'generalize',
] as const;
export type MsMethod = (typeof MS_METHODS)[number];

export interface MsRule {
  readonly index: number;
  readonly path: string;
  /** Lower-cased, as upstream compares method names case-insensitively. */
  readonly method: MsMethod;
  /** `Patient` for `Patient.name`; '' for `nodesByType(...)`. */
  readonly resourceType: string;
  /** The FHIRPath evaluated from the resource (`name`), or the whole path. */
  readonly expression: string;
  /** The path is just the resource type (`Patient`): the rule matches the resource node itself. */
  readonly isResourceTypeRule: boolean;
  /** `nodesByType('T')[.child]` / `nodesByName('n')[.child]`, answered from the per-resource lookup. */
  readonly lookup?: { readonly by: 'type' | 'name'; readonly key: string; readonly child?: string };
  /** The rule object as written (per-method settings: replaceWith, span, rangeType, roundTo, cases…). */
  readonly settings: Readonly<Record<string, unknown>>;
}

export interface MsParameters {
  readonly dateShiftKey: string;
  readonly dateShiftScope: 'resource' | 'file' | 'folder';
  readonly dateShiftFixedOffsetInDays?: number;
  readonly cryptoHashKey: string;
  readonly encryptKey: string;
  readonly enablePartialAgesForRedact: boolean;
  readonly enablePartialDatesForRedact: boolean;
  readonly enablePartialZipCodesForRedact: boolean;
  readonly restrictedZipCodeTabulationAreas: readonly string[];
  /** Which keys were generated because the config left them empty (as upstream does; not reproducible). */
  readonly generatedKeys: readonly string[];
}

export interface MsConfig {
  readonly source: string;
  readonly fhirVersion: string;
  readonly processingErrors: 'raise' | 'skip';
  readonly rules: readonly MsRule[];
  readonly parameters: MsParameters;
}

// AnonymizationFhirPathRule's regular expressions, unchanged.
const TYPE_RULE = /^nodesByType\(['|"](?<type>[A-Za-z0-9]+)['|"]\)(\.(?<expression>[A-Za-z0-9]+))?$/;
const NAME_RULE = /^nodesByName\(['|"](?<name>[A-Za-z0-9]+)['|"]\)(\.(?<expression>[A-Za-z0-9]+))?$/;
const PATH_RULE = /^(?<resourceType>[A-Z][a-zA-Z]*)?(\.)?(?<expression>.*?)$/;

/** Keys are overridable from the environment, so a privacy office's config can stay free of secrets. */
export const MS_ENV = {
  cryptoHashKey: 'SLUICE_MS_CRYPTOHASH_KEY',
  dateShiftKey: 'SLUICE_MS_DATESHIFT_KEY',
  encryptKey: 'SLUICE_MS_ENCRYPT_KEY',
} as const;

const KNOWN_PARAMETERS = new Set([
  'dateShiftKey',
  'dateShiftScope',
  'dateShiftFixedOffsetInDays',
  'cryptoHashKey',
  'encryptKey',
  'enablePartialAgesForRedact',
  'enablePartialDatesForRedact',
  'enablePartialZipCodesForRedact',
  'restrictedZipCodeTabulationAreas',
  'customSettings',
]);

/** Whether a parsed document is in the Microsoft format (it has `fhirPathRules`). */
export function isMsConfig(input: unknown): boolean {
  return typeof input === 'object' && input !== null && !Array.isArray(input) && 'fhirPathRules' in input;
}

/** Only usable with the user functions the engine registers (`nodesByType`, `nodesByName`). */
const SYNTAX_TABLE = {
  nodesByType: { fn: (inputs: unknown[]) => inputs, arity: { 1: ['String'] } },
  nodesByName: { fn: (inputs: unknown[]) => inputs, arity: { 1: ['String'] } },
};

function checkFhirPath(expression: string): string | undefined {
  try {
    compile(expression, r4, { async: false, userInvocationTable: SYNTAX_TABLE } as never);
    return undefined;
  } catch (err) {
    return (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? 'invalid';
  }
}

/**
 * Validates and compiles a config. Empty keys are generated per process, as upstream's
 * GenerateDefaultParametersIfNotConfigured does (so hashes are then not reproducible across runs);
 * `env` overrides keys first. Throws ANON_MS_CONFIG_INVALID with every problem.
 */
export function compileMsConfig(
  input: unknown,
  source = 'inline',
  env: Readonly<Record<string, string | undefined>> = {},
): MsConfig {
  const problems: string[] = [];
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw invalid(source, ['(root): a config is a JSON object']);
  }
  const doc = input as Record<string, unknown>;
  const fhirVersion = doc.fhirVersion;
  if (fhirVersion !== undefined && fhirVersion !== null && fhirVersion !== '') {
    if (typeof fhirVersion !== 'string' || fhirVersion.toLowerCase() !== 'r4') {
      problems.push('fhirVersion: only R4 is supported (or leave it empty)');
    }
  }
  let processingErrors: 'raise' | 'skip' = 'raise';
  const pe = doc.processingErrors;
  if (pe !== undefined) {
    if (typeof pe === 'string' && ['raise', 'skip'].includes(pe.toLowerCase())) {
      processingErrors = pe.toLowerCase() as 'raise' | 'skip';
    } else problems.push('processingErrors: raise or skip');
  }
  const rawRules = doc.fhirPathRules;
  const rules: MsRule[] = [];
  if (!Array.isArray(rawRules)) problems.push('fhirPathRules: a list of rules is required');
  else
    rawRules.forEach((raw, index) => {
      compileRule(raw, index, rules, problems);
    });
  const parameters = compileParameters(doc.parameters, env, problems);
  if (problems.length > 0) throw invalid(source, problems);
  return {
    source,
    fhirVersion: typeof fhirVersion === 'string' ? fhirVersion : '',
    processingErrors,
    rules,
    parameters,
  };
}

function compileRule(raw: unknown, index: number, rules: MsRule[], problems: string[]): void {
  const at = `fhirPathRules[${index}]`;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    problems.push(`${at}: a rule is an object with path and method`);
    return;
  }
  const rule = raw as Record<string, unknown>;
  if (typeof rule.path !== 'string' || rule.path === '' || typeof rule.method !== 'string') {
    problems.push(`${at}: path and method are required strings`);
    return;
  }
  const path = rule.path;
  const method = rule.method.toLowerCase();
  if (!(MS_METHODS as readonly string[]).includes(method)) {
    problems.push(`${at}.method: ${rule.method} is not one of ${MS_METHODS.join(', ')}`);
    return;
  }
  const error = checkFhirPath(path);
  if (error) problems.push(`${at}.path: not a FHIRPath expression (${error})`);
  const settingsProblems = checkSettings(method as MsMethod, rule, at);
  problems.push(...settingsProblems);
  const m = PATH_RULE.exec(path);
  const resourceType = m?.groups?.resourceType ?? '';
  const expression = m?.groups?.expression ? m.groups.expression : path;
  const typeMatch = TYPE_RULE.exec(path);
  const nameMatch = NAME_RULE.exec(path);
  const lookup = typeMatch?.groups
    ? {
        by: 'type' as const,
        key: typeMatch.groups.type ?? '',
        ...(typeMatch.groups.expression ? { child: typeMatch.groups.expression } : {}),
      }
    : nameMatch?.groups
      ? {
          by: 'name' as const,
          key: nameMatch.groups.name ?? '',
          ...(nameMatch.groups.expression ? { child: nameMatch.groups.expression } : {}),
        }
      : undefined;
  rules.push({
    index,
    path,
    method: method as MsMethod,
    resourceType,
    expression,
    isResourceTypeRule: path === resourceType,
    ...(lookup ? { lookup } : {}),
    settings: rule,
  });
}

function checkSettings(method: MsMethod, rule: Record<string, unknown>, at: string): string[] {
  const problems: string[] = [];
  switch (method) {
    case 'substitute':
      if (!('replaceWith' in rule)) problems.push(`${at}.replaceWith: required for substitute`);
      break;
    case 'perturb': {
      if (!('span' in rule)) problems.push(`${at}.span: required for perturb`);
      else if (!(Number(rule.span) >= 0)) problems.push(`${at}.span: a non-negative number`);
      if ('roundTo' in rule) {
        const r = Number(rule.roundTo);
        if (!Number.isInteger(r) || r < 0 || r > 28) problems.push(`${at}.roundTo: an integer from 0 to 28`);
      }
      if (
        'rangeType' in rule &&
        !(
          typeof rule.rangeType === 'string' &&
          ['fixed', 'proportional'].includes(rule.rangeType.toLowerCase())
        )
      ) {
        problems.push(`${at}.rangeType: fixed or proportional`);
      }
      break;
    }
    case 'generalize': {
      const cases = rule.cases;
      if (typeof cases !== 'object' || cases === null || Array.isArray(cases)) {
        problems.push(`${at}.cases: an object of FHIRPath condition → FHIRPath value`);
      } else {
        for (const [condition, value] of Object.entries(cases)) {
          const e1 = checkFhirPath(condition);
          const e2 = typeof value === 'string' ? checkFhirPath(value) : 'not a string';
          if (e1 || e2) problems.push(`${at}.cases: invalid expression (${e1 ?? e2})`);
        }
      }
      if (
        'otherValues' in rule &&
        !(typeof rule.otherValues === 'string' && ['redact', 'keep'].includes(rule.otherValues.toLowerCase()))
      ) {
        problems.push(`${at}.otherValues: redact or keep`);
      }
      break;
    }
    case 'keep':
    case 'redact':
    case 'dateshift':
    case 'cryptohash':
    case 'encrypt':
      break;
  }
  return problems;
}

/** One default key per process, shared by cryptoHash and encrypt, as upstream's static default. */
const DEFAULT_CRYPTO_KEY = randomUUID().replaceAll('-', '');

function compileParameters(
  raw: unknown,
  env: Readonly<Record<string, string | undefined>>,
  problems: string[],
): MsParameters {
  const p = (typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? raw : {}) as Record<
    string,
    unknown
  >;
  if (raw !== undefined && raw !== null && p !== raw) problems.push('parameters: an object');
  for (const key of Object.keys(p)) {
    if (!KNOWN_PARAMETERS.has(key)) problems.push(`parameters.${key}: not a parameter of the format`);
  }
  const str = (key: string): string => {
    const v = p[key];
    if (v === undefined || v === null) return '';
    if (typeof v !== 'string') {
      problems.push(`parameters.${key}: a string`);
      return '';
    }
    return v;
  };
  const bool = (key: string): boolean => {
    const v = p[key];
    if (v === undefined || v === null) return false;
    if (typeof v !== 'boolean') problems.push(`parameters.${key}: true or false`);
    return v === true;
  };
  const generatedKeys: string[] = [];
  const key = (name: keyof typeof MS_ENV, fallback: () => string): string => {
    const fromEnv = env[MS_ENV[name]];
    if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
    const fromConfig = str(name);
    if (fromConfig !== '') return fromConfig;
    generatedKeys.push(name);
    return fallback();
  };
  const scopeRaw = str('dateShiftScope').toLowerCase() || 'resource';
  if (!['resource', 'file', 'folder'].includes(scopeRaw)) {
    problems.push('parameters.dateShiftScope: resource, file or folder');
  }
  const fixed = p.dateShiftFixedOffsetInDays;
  if (fixed !== undefined && fixed !== null && !Number.isInteger(fixed)) {
    problems.push('parameters.dateShiftFixedOffsetInDays: an integer number of days');
  }
  const zips = p.restrictedZipCodeTabulationAreas;
  if (
    zips !== undefined &&
    zips !== null &&
    !(Array.isArray(zips) && zips.every((z) => typeof z === 'string'))
  ) {
    problems.push('parameters.restrictedZipCodeTabulationAreas: a list of strings');
  }
  const encryptKey = key('encryptKey', () => DEFAULT_CRYPTO_KEY);
  if (!aesAlgorithm(Buffer.from(encryptKey, 'utf8'))) {
    problems.push(
      `parameters.encryptKey: ${Buffer.byteLength(encryptKey, 'utf8') * 8} bits; AES needs 128, 192 or 256 (UTF-8 bytes)`,
    );
  }
  return {
    dateShiftKey: key('dateShiftKey', () => randomUUID().replaceAll('-', '')),
    dateShiftScope: scopeRaw as MsParameters['dateShiftScope'],
    ...(typeof fixed === 'number' && Number.isInteger(fixed) ? { dateShiftFixedOffsetInDays: fixed } : {}),
    cryptoHashKey: key('cryptoHashKey', () => DEFAULT_CRYPTO_KEY),
    encryptKey,
    enablePartialAgesForRedact: bool('enablePartialAgesForRedact'),
    enablePartialDatesForRedact: bool('enablePartialDatesForRedact'),
    enablePartialZipCodesForRedact: bool('enablePartialZipCodesForRedact'),
    restrictedZipCodeTabulationAreas: Array.isArray(zips) ? zips.filter((z) => typeof z === 'string') : [],
    generatedKeys,
  };
}

function invalid(source: string, problems: readonly string[]): SluiceError {
  return new SluiceError(
    'ANON_MS_CONFIG_INVALID',
    `The anonymization config ${source} (Microsoft format) is invalid: ${problems.join('; ')}`,
    { details: { source, problems } },
  );
}
