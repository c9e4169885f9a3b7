import { generalizeBirthDate, generalizeZip } from '../anonymize/generalize.ts';
import { type PseudonymKey, pseudonymize } from '../anonymize/pseudonym.ts';
import { isValidNpi, NPI_SYSTEM } from '../fhir/npi.ts';
import { asArray, identifierValues, isJsonObject, type JsonObject, str } from '../fhir/resource.ts';
import type {
  CanonicalGender,
  CanonicalRecord,
  Hcp,
  Organization,
  PatientProfile,
  PostalAddress,
  SourceRef,
} from '../model/canonical.ts';
import { asSourceId, type Npi, type SystemName } from '../model/ids.ts';
import { fail, type Issue, issue, type Outcome, ok, warning } from './outcome.ts';

/** Version of the FHIR R4 → canonical mapping; recorded with every record it produces. */
export const FHIR_TO_CANONICAL_VERSION = 'fhir-r4-to-canonical@1.0.0';

export interface FhirMappingContext {
  readonly system: SystemName;
  /** When the record was read (ISO instant); becomes `source.verifiedAt`. */
  readonly verifiedAt: string;
  /** The date ages are computed on for generalisation. */
  readonly asOf: Date;
  readonly pseudonymKey: PseudonymKey;
  readonly restrictedZip3: ReadonlySet<string>;
}

export const MAPPED_RESOURCE_TYPES = ['Practitioner', 'Organization', 'Patient'] as const;
export type MappedResourceType = (typeof MAPPED_RESOURCE_TYPES)[number];

export function isMappedResourceType(type: string): type is MappedResourceType {
  return (MAPPED_RESOURCE_TYPES as readonly string[]).includes(type);
}

/** Maps one validated FHIR R4 resource to its canonical record. */
export function fhirToCanonical(resource: JsonObject, ctx: FhirMappingContext): Outcome<CanonicalRecord> {
  const type = resource.resourceType;
  switch (type) {
    case 'Practitioner':
      return mapPractitioner(resource, ctx);
    case 'Organization':
      return mapOrganization(resource, ctx);
    case 'Patient':
      return mapPatient(resource, ctx);
    default:
      return fail('REC_UNSUPPORTED_TYPE', [
        issue(
          'REC_UNSUPPORTED_TYPE',
          'resourceType',
          `no canonical mapping for resource type ${String(type)}`,
        ),
      ]);
  }
}

function sourceRef(resource: JsonObject, ctx: FhirMappingContext): SourceRef {
  const meta = isJsonObject(resource.meta) ? resource.meta : {};
  const ref: { -readonly [K in keyof SourceRef]: SourceRef[K] } = {
    system: ctx.system,
    resourceType: String(resource.resourceType),
    id: asSourceId(String(resource.id)),
    verifiedAt: ctx.verifiedAt,
  };
  const versionId = str(meta.versionId);
  const lastUpdated = str(meta.lastUpdated);
  if (versionId !== undefined) ref.versionId = versionId;
  if (lastUpdated !== undefined) ref.lastUpdated = lastUpdated;
  return ref;
}

/** The resource's NPI, or the issues that make it unusable (several different NPIs, a malformed one). */
function readNpi(resource: JsonObject): { npi?: Npi; issues: Issue[] } {
  const values = [...new Set(identifierValues(resource, NPI_SYSTEM))];
  if (values.length === 0) return { issues: [] };
  if (values.length > 1) {
    return {
      issues: [
        issue('MAP_INVALID_IDENTIFIER', 'identifier', `${values.length} different NPIs; expected one`),
      ],
    };
  }
  const value = values[0] as string;
  if (!isValidNpi(value)) {
    return {
      issues: [
        issue(
          'MAP_INVALID_IDENTIFIER',
          `identifier.where(system='${NPI_SYSTEM}').value`,
          'NPI is not ten digits with a valid check digit',
        ),
      ],
    };
  }
  return { npi: value, issues: [] };
}

function readAddresses(value: unknown): PostalAddress[] {
  const out: PostalAddress[] = [];
  for (const a of asArray(value)) {
    if (!isJsonObject(a)) continue;
    const lines = asArray(a.line).filter((l): l is string => typeof l === 'string' && l.trim() !== '');
    const address: { -readonly [K in keyof PostalAddress]: PostalAddress[K] } = { lines };
    const use = str(a.use);
    if (use === 'home' || use === 'work' || use === 'temp' || use === 'old' || use === 'billing')
      address.use = use;
    const city = str(a.city);
    const state = str(a.state);
    const postalCode = str(a.postalCode);
    const country = str(a.country);
    if (city !== undefined) address.city = city;
    if (state !== undefined) address.state = state;
    if (postalCode !== undefined) address.postalCode = postalCode;
    if (country !== undefined) address.country = country;
    if (lines.length > 0 || city !== undefined || postalCode !== undefined) out.push(address);
  }
  // Current addresses only: an `old` address is history, not a place to reach anyone.
  return out.filter((a) => a.use !== 'old');
}

function readGender(value: unknown): CanonicalGender {
  return value === 'male' || value === 'female' || value === 'other' ? value : 'unknown';
}

/** The official (else first) HumanName: given names joined, family name. */
function readName(value: unknown): { given?: string; family?: string } {
  const names = asArray(value).filter(isJsonObject);
  const name = names.find((n) => n.use === 'official') ?? names.find((n) => n.use !== 'old') ?? names[0];
  if (!name) return {};
  const given = asArray(name.given)
    .filter((g): g is string => typeof g === 'string')
    .join(' ')
    .trim();
  const family = str(name.family)?.trim() ?? str(name.text)?.trim();
  const out: { given?: string; family?: string } = {};
  if (given !== '') out.given = given;
  if (family !== undefined) out.family = family;
  return out;
}

function mapPractitioner(resource: JsonObject, ctx: FhirMappingContext): Outcome<Hcp> {
  const { npi, issues } = readNpi(resource);
  const name = readName(resource.name);
  if (name.family === undefined) {
    issues.push(issue('MAP_REQUIRED_MISSING', 'name.family', 'practitioner has no family name'));
  }
  if (issues.length > 0)
    return fail(
      issues[0]?.code === 'MAP_REQUIRED_MISSING' ? 'MAP_REQUIRED_MISSING' : 'MAP_INVALID_IDENTIFIER',
      issues,
    );
  const warnings: Issue[] = [];
  if (npi === undefined)
    warnings.push(
      warning('MAP_NO_NPI', 'identifier', 'practitioner has no NPI; matched by external id only'),
    );
  const hcp: { -readonly [K in keyof Hcp]: Hcp[K] } = {
    kind: 'HCP',
    source: sourceRef(resource, ctx),
    lastName: name.family as string,
    active: resource.active !== false,
    addresses: readAddresses(resource.address),
  };
  if (npi !== undefined) hcp.npi = npi;
  if (name.given !== undefined) hcp.firstName = name.given;
  const gender = readGender(resource.gender);
  if (gender !== 'unknown') hcp.gender = gender;
  const credentials = readCredentials(resource.qualification);
  if (credentials !== undefined) hcp.credentials = credentials;
  return ok(hcp, warnings);
}

function readCredentials(value: unknown): string | undefined {
  for (const q of asArray(value)) {
    if (!isJsonObject(q) || !isJsonObject(q.code)) continue;
    const text = str(q.code.text);
    if (text !== undefined) return text;
    for (const coding of asArray(q.code.coding)) {
      if (isJsonObject(coding)) {
        const code = str(coding.code) ?? str(coding.display);
        if (code !== undefined) return code;
      }
    }
  }
  return undefined;
}

function mapOrganization(resource: JsonObject, ctx: FhirMappingContext): Outcome<Organization> {
  const { npi, issues } = readNpi(resource);
  const name = str(resource.name)?.trim();
  if (name === undefined) issues.push(issue('MAP_REQUIRED_MISSING', 'name', 'organization has no name'));
  if (issues.length > 0)
    return fail(
      issues[0]?.code === 'MAP_REQUIRED_MISSING' ? 'MAP_REQUIRED_MISSING' : 'MAP_INVALID_IDENTIFIER',
      issues,
    );
  const org: { -readonly [K in keyof Organization]: Organization[K] } = {
    kind: 'Organization',
    source: sourceRef(resource, ctx),
    name: name as string,
    active: resource.active !== false,
    addresses: readAddresses(resource.address),
  };
  if (npi !== undefined) org.npi = npi;
  return ok(org);
}

/**
 * A patient becomes only a pseudonymous profile: keyed pseudonym, birth year (suppressed over 89),
 * three-digit ZIP (restricted prefixes as 000) and gender. Nothing else of the Patient is read.
 */
function mapPatient(resource: JsonObject, ctx: FhirMappingContext): Outcome<PatientProfile> {
  const source = sourceRef(resource, ctx);
  const birth = generalizeBirthDate(str(resource.birthDate), ctx.asOf);
  const home = pickAddress(readAddresses(resource.address));
  const profile: { -readonly [K in keyof PatientProfile]: PatientProfile[K] } = {
    kind: 'PatientProfile',
    source,
    pseudonym: pseudonymize(ctx.pseudonymKey, ctx.system, 'Patient', source.id),
    ageOver89: birth.ageOver89,
    gender: readGender(resource.gender),
  };
  if (birth.birthYear !== undefined) profile.birthYear = birth.birthYear;
  const zip3 = generalizeZip(home?.postalCode, home?.country, ctx.restrictedZip3);
  if (zip3 !== undefined) profile.zip3 = zip3;
  return ok(profile);
}

function pickAddress(addresses: readonly PostalAddress[]): PostalAddress | undefined {
  return (
    addresses.find((a) => a.use === 'home') ?? addresses.find((a) => a.use === undefined) ?? addresses[0]
  );
}
