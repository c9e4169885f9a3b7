import { ageInYears, generalizeBirthDate, generalizeZip } from '../anonymize/generalize.ts';
import { type PseudonymKey, pseudonymize } from '../anonymize/pseudonym.ts';
import { consentFromFhir } from '../consent/from-fhir.ts';
import { consentFromVeeva } from '../consent/from-veeva.ts';
import { NPI_SYSTEM } from '../fhir/npi.ts';
import { asArray, isJsonObject, type JsonObject, parseReference, str } from '../fhir/resource.ts';
import type { Issue, Outcome } from '../mapping/outcome.ts';
import type { PostalAddress } from '../model/canonical.ts';
import type { RecordKey } from '../model/entities.ts';
import { asSourceId, asSystemName, type SystemName } from '../model/ids.ts';

/**
 * Named structural transforms a matrix field may reference. The matrix keeps every selection and
 * decision as data (FHIRPath, concept maps, normalisers); these only reshape values the rule selected.
 */

export interface MatrixContext {
  /** The flow's name for the source system; becomes `source.system` and the pseudonym input. */
  readonly system: SystemName;
  /** When the record was read (ISO instant); becomes `source.verifiedAt`. */
  readonly verifiedAt: string;
  /** The date ages are computed on (Safe Harbor generalisation). */
  readonly asOf?: Date;
  readonly pseudonymKey?: PseudonymKey;
  readonly restrictedZip3?: ReadonlySet<string>;
  /** Target configuration read by `config:` fields (e.g. Veeva record type ids, lineage field). */
  readonly config?: Readonly<Record<string, unknown>>;
}

export interface TransformEnv {
  readonly input: JsonObject;
  readonly ctx: MatrixContext;
  /** Position of the item in a child `forEach`. */
  readonly index: number;
}

/** Transformed values, or a record-level problem (code + message, the engine adds the path). */
export type TransformResult =
  | { readonly values: unknown[] }
  | { readonly problem: Omit<Issue, 'path' | 'severity'> };

export type Transform = (values: unknown[], env: TransformEnv) => TransformResult;

const values = (v: unknown[]): TransformResult => ({ values: v });
const problem = (code: string, message: string): TransformResult => ({ problem: { code, message } });

const BORN_AFTER = 'the birth date is later than the day the run started (a data-entry error at the source?)';

/**
 * True when even the earliest day a (possibly partial) birth date can mean is after `asOf`, a day of
 * grace allowed: a birth date written in a time zone already a day ahead is not an error.
 */
function bornAfter(birthDate: string | undefined, asOf: Date): boolean {
  if (birthDate === undefined) return false;
  return (ageInYears(birthDate, new Date(asOf.getTime() + 86_400_000)) ?? 0) < 0;
}

const ADDRESS_USES = new Set(['home', 'work', 'temp', 'old', 'billing']);

/** FHIR Address → PostalAddress; blank lines dropped, empty addresses and `old` ones skipped. */
function fhirAddress(a: unknown): PostalAddress | undefined {
  if (!isJsonObject(a)) return undefined;
  const lines = asArray(a.line).filter((l): l is string => typeof l === 'string' && l.trim() !== '');
  const address: { -readonly [K in keyof PostalAddress]: PostalAddress[K] } = { lines };
  const use = str(a.use);
  if (use !== undefined && ADDRESS_USES.has(use)) address.use = use as NonNullable<PostalAddress['use']>;
  for (const key of ['city', 'state', 'postalCode', 'country'] as const) {
    const value = str(a[key]);
    if (value !== undefined) address[key] = value;
  }
  if (lines.length === 0 && address.city === undefined && address.postalCode === undefined) return undefined;
  // Current addresses only: an `old` address is history, not a place to reach anyone.
  return address.use === 'old' ? undefined : address;
}

function pickHome(addresses: readonly PostalAddress[]): PostalAddress | undefined {
  return (
    addresses.find((a) => a.use === 'home') ?? addresses.find((a) => a.use === undefined) ?? addresses[0]
  );
}

/** `system:Type/id` (a Sluice external id) or a relative FHIR reference → RecordKey. */
export function parseExternalKey(value: string, fallbackSystem: SystemName, fallbackType: string): RecordKey {
  const match = /^([a-z][a-z0-9_-]*):([A-Z][A-Za-z]+)\/([^#/]+)$/.exec(value);
  if (match) {
    return {
      system: asSystemName(match[1] as string),
      resourceType: match[2] as string,
      id: asSourceId(match[3] as string),
    };
  }
  return { system: fallbackSystem, resourceType: fallbackType, id: asSourceId(value) };
}

/**
 * The CRM external id of a record: its own id when it came from the target system itself, else
 * `system:Type/id` of its origin (the same scheme as `sourceExternalId`).
 */
export function recordKeyExternalId(key: JsonObject, targetSystem: string): string {
  if (key.system === targetSystem) return String(key.id);
  return `${String(key.system)}:${String(key.resourceType)}/${String(key.id)}`;
}

function fhirReference(v: unknown, ctx: MatrixContext): RecordKey | undefined {
  const ref = isJsonObject(v) ? v.reference : v;
  const parsed = parseReference(ref);
  if (parsed === undefined) return undefined;
  return { system: ctx.system, resourceType: parsed.resourceType, id: asSourceId(parsed.id) };
}

function outcomeToResult<T>(outcome: Outcome<T>): TransformResult {
  if (outcome.ok) return values([outcome.value]);
  const first = outcome.issues[0];
  return problem(outcome.code, first?.message ?? 'rejected by the consent importer');
}

export const TRANSFORMS: Readonly<Record<string, Transform>> = {
  'postal-address': (vs) => values(vs.map(fhirAddress).filter((a) => a !== undefined)),

  'veeva-address': (vs) =>
    values(
      vs.filter(isJsonObject).map((a) => {
        const lines = [str(a.Name), ...(str(a.Address_line_2_vod__c)?.split(', ') ?? [])].filter(
          (l): l is string => l !== undefined,
        );
        const out: { -readonly [K in keyof PostalAddress]: PostalAddress[K] } = { lines };
        const pairs = [
          ['city', a.City_vod__c],
          ['state', a.State_vod__c],
          ['postalCode', a.Zip_vod__c],
          ['country', a.Country_vod__c],
        ] as const;
        for (const [key, value] of pairs) {
          const s = str(value);
          if (s !== undefined) out[key] = s;
        }
        return out;
      }),
    ),

  /** Keyed pseudonym of the input resource (never its id in clear). */
  pseudonym: (vs, { ctx, input }) => {
    const id = str(vs[0]);
    if (ctx.pseudonymKey === undefined) return problem('MAP_REQUIRED_MISSING', 'no pseudonym key configured');
    if (id === undefined) return problem('MAP_REQUIRED_MISSING', 'record has no id to pseudonymise');
    return values([pseudonymize(ctx.pseudonymKey, ctx.system, String(input.resourceType), id)]);
  },

  'birth-year': (vs, { ctx }) => {
    const asOf = ctx.asOf ?? new Date(ctx.verifiedAt);
    if (bornAfter(str(vs[0]), asOf)) return problem('MAP_INVALID_VALUE', BORN_AFTER);
    const birth = generalizeBirthDate(str(vs[0]), asOf);
    return values(birth.birthYear === undefined ? [] : [birth.birthYear]);
  },

  'age-over-89': (vs, { ctx }) => {
    const asOf = ctx.asOf ?? new Date(ctx.verifiedAt);
    if (bornAfter(str(vs[0]), asOf)) return problem('MAP_INVALID_VALUE', BORN_AFTER);
    return values([generalizeBirthDate(str(vs[0]), asOf).ageOver89]);
  },

  /** Safe Harbor ZIP3 of the home (else first current) address. */
  zip3: (vs, { ctx }) => {
    const home = pickHome(vs.map(fhirAddress).filter((a) => a !== undefined));
    const zip3 = generalizeZip(home?.postalCode, home?.country, ctx.restrictedZip3 ?? new Set());
    return values(zip3 === undefined ? [] : [zip3]);
  },

  /** FHIR Reference → RecordKey; a reference that is not `Type/id` is refused, never guessed. */
  reference: (vs, { ctx }) => {
    const out: RecordKey[] = [];
    for (const v of vs) {
      const key = fhirReference(v, ctx);
      if (key === undefined)
        return problem('MAP_INVALID_VALUE', 'reference is not a literal Type/id reference');
      out.push(key);
    }
    return values(out);
  },

  /** A Salesforce lookup by external id (`X__r.External_ID_vod__c`) → RecordKey. */
  'external-key': (vs, { ctx }) => values(vs.map((v) => parseExternalKey(String(v), ctx.system, 'Account'))),

  codings: (vs) =>
    values(
      vs.filter(isJsonObject).flatMap((c) => {
        const code = str(c.code);
        if (code === undefined) return [];
        const system = str(c.system);
        return [system === undefined ? { code } : { system, code }];
      }),
    ),

  /** FHIR Identifier type MR → { system, value } (an MRN is meaningless without its system). */
  mrn: (vs) => {
    const out: { system: string; value: string }[] = [];
    for (const v of vs) {
      if (!isJsonObject(v)) continue;
      const system = str(v.system);
      const value = str(v.value)?.trim();
      if (value === undefined) continue;
      if (system === undefined) return problem('MAP_INVALID_IDENTIFIER', 'MRN has no assigning system');
      out.push({ system, value });
    }
    return values(out);
  },

  'fhir-email': (vs) =>
    values(
      vs.filter(isJsonObject).flatMap((t) => {
        const value = str(t.value)?.trim().toLowerCase();
        if (value === undefined) return [];
        // FHIR has no standard verification flag; an extension-free `use: home` is taken as unverified.
        const verified = asArray(t.extension).some(
          (e) => isJsonObject(e) && e.url === 'urn:sluice:verified' && e.valueBoolean === true,
        );
        return [{ value, verified }];
      }),
    ),

  // canonical → FHIR R4
  'to-fhir-address': (vs) =>
    values(
      vs.filter(isJsonObject).map((a) => {
        const out: JsonObject = {};
        if (typeof a.use === 'string') out.use = a.use;
        const lines = asArray(a.lines).filter((l): l is string => typeof l === 'string');
        if (lines.length > 0) out.line = lines;
        for (const key of ['city', 'state', 'postalCode', 'country'] as const) {
          const value = a[key];
          if (typeof value === 'string') out[key] = value;
        }
        return out;
      }),
    ),
  'to-npi-identifier': (vs) => values(vs.map((v) => ({ system: NPI_SYSTEM, value: String(v) }))),
  'to-reference': (vs) =>
    values(vs.filter(isJsonObject).map((k) => ({ reference: `${String(k.resourceType)}/${String(k.id)}` }))),
  'to-credentials': (vs) => values(vs.map((v) => ({ code: { text: String(v) } }))),
  'to-specialty': (vs) =>
    values(vs.map((v) => ({ coding: [{ system: 'http://nucc.org/provider-taxonomy', code: String(v) }] }))),
  'to-codeable-text': (vs) => values(vs.map((v) => ({ text: String(v) }))),

  // canonical → Veeva
  'first-line': (vs) => values(vs.length > 0 ? [String(vs[0])] : []),
  'other-lines': (vs) => {
    const rest = vs.slice(1).map(String).join(', ');
    return values(rest === '' ? [] : [rest]);
  },
  'is-first': (_vs, { index }) => values([index === 0]),
  /** RecordKey → a lookup by the parent's external id (`{ External_ID_vod__c: … }`). */
  'account-lookup': (vs, { ctx }) =>
    values(vs.filter(isJsonObject).map((k) => ({ External_ID_vod__c: recordKeyExternalId(k, ctx.system) }))),

  // builders: records whose structure a dedicated importer owns
  'consent-from-fhir': (_vs, { input, ctx }) => {
    if (ctx.pseudonymKey === undefined) return problem('MAP_REQUIRED_MISSING', 'no pseudonym key configured');
    return outcomeToResult(consentFromFhir(input, { system: ctx.system, pseudonymKey: ctx.pseudonymKey }));
  },
  'consent-from-veeva': (_vs, { input, ctx }) => {
    if (ctx.pseudonymKey === undefined) return problem('MAP_REQUIRED_MISSING', 'no pseudonym key configured');
    return outcomeToResult(consentFromVeeva(input, { system: ctx.system, pseudonymKey: ctx.pseudonymKey }));
  },
};

export function isTransformName(name: string): boolean {
  return Object.hasOwn(TRANSFORMS, name);
}
