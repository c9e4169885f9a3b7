import { z } from 'zod';
import { CONSENT_STATUSES } from '../consent/model.ts';
import { isValidNpi } from '../fhir/npi.ts';
import { fail, issue, type Outcome, ok } from '../mapping/outcome.ts';
import type { AnyCanonicalKind, AnyCanonicalRecord } from './entities.ts';

/**
 * A zod schema per canonical kind: the matrix engine validates every record it produces, so a
 * mapping-file mistake surfaces as a record-level issue with a path, never as a malformed record.
 */

const nonEmpty = z.string().trim().min(1);
const isoDate = z.string().regex(/^\d{4}-\d{2}-\d{2}$/);
const isoInstantOrDate = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?$/);

export const sourceRefSchema = z.strictObject({
  system: nonEmpty,
  resourceType: nonEmpty,
  id: nonEmpty,
  versionId: z.string().optional(),
  lastUpdated: z.string().optional(),
  verifiedAt: z.string().min(1),
  mapping: z.string().optional(),
});

export const recordKeySchema = z.strictObject({ system: nonEmpty, resourceType: nonEmpty, id: nonEmpty });
export const genderSchema = z.enum(['male', 'female', 'other', 'unknown']);
export const npiSchema = z.string().refine(isValidNpi, 'not a valid NPI');

export const postalAddressSchema = z.strictObject({
  use: z.enum(['home', 'work', 'temp', 'old', 'billing']).optional(),
  lines: z.array(z.string()),
  city: z.string().optional(),
  state: z.string().optional(),
  postalCode: z.string().optional(),
  country: z.string().optional(),
});

export const hcpSchema = z.strictObject({
  kind: z.literal('HCP'),
  source: sourceRefSchema,
  npi: npiSchema.optional(),
  firstName: z.string().optional(),
  lastName: nonEmpty,
  gender: genderSchema.optional(),
  credentials: z.string().optional(),
  active: z.boolean(),
  addresses: z.array(postalAddressSchema),
});

export const organizationSchema = z.strictObject({
  kind: z.literal('Organization'),
  source: sourceRefSchema,
  npi: npiSchema.optional(),
  name: nonEmpty,
  active: z.boolean(),
  addresses: z.array(postalAddressSchema),
});

export const patientProfileSchema = z.strictObject({
  kind: z.literal('PatientProfile'),
  source: sourceRefSchema,
  pseudonym: nonEmpty,
  birthYear: z.number().int().min(1800).max(3000).optional(),
  ageOver89: z.boolean(),
  zip3: z
    .string()
    .regex(/^\d{3}$/)
    .optional(),
  gender: genderSchema,
});

export const personSchema = z.strictObject({
  kind: z.literal('Person'),
  source: sourceRefSchema,
  enterpriseId: nonEmpty.optional(),
  mrns: z.array(z.strictObject({ system: nonEmpty, value: nonEmpty })),
  givenNames: z.array(z.string()),
  familyName: z.string().optional(),
  birthDate: isoDate.optional(),
  gender: genderSchema,
  emails: z.array(z.strictObject({ value: z.string().includes('@'), verified: z.boolean() })),
  phones: z.array(z.string().regex(/^\+[1-9]\d{6,14}$/)),
  addresses: z.array(postalAddressSchema),
  deceased: z.boolean(),
});

export const consentRecordSchema = z.strictObject({
  kind: z.literal('Consent'),
  source: sourceRefSchema,
  // The consent module validates the state's inner structure when it builds it.
  consent: z.looseObject({ subject: nonEmpty, status: z.enum(CONSENT_STATUSES), policyVersion: z.string() }),
});

export const affiliationSchema = z.strictObject({
  kind: z.literal('Affiliation'),
  source: sourceRefSchema,
  hcp: recordKeySchema,
  organization: recordKeySchema,
  primary: z.boolean(),
  active: z.boolean(),
  specialties: z.array(nonEmpty),
});

export const programEnrollmentSchema = z.strictObject({
  kind: z.literal('ProgramEnrollment'),
  source: sourceRefSchema,
  subject: recordKeySchema,
  program: nonEmpty,
  status: z.enum(['requested', 'active', 'completed', 'cancelled']),
  enrolledOn: isoDate.optional(),
});

export const interactionSchema = z.strictObject({
  kind: z.literal('Interaction'),
  source: sourceRefSchema,
  hcp: recordKeySchema,
  channel: z.enum(['in-person', 'phone', 'video', 'email', 'chat', 'other']),
  status: z.enum(['planned', 'saved', 'submitted']),
  occurredAt: isoInstantOrDate.optional(),
});

export const careEventSchema = z.strictObject({
  kind: z.literal('CareEvent'),
  source: sourceRefSchema,
  eventType: z.enum(['encounter', 'appointment', 'referral']),
  subject: recordKeySchema,
  status: nonEmpty,
  start: isoInstantOrDate.optional(),
  end: isoInstantOrDate.optional(),
  performers: z.array(recordKeySchema),
  codes: z.array(z.strictObject({ system: z.string().optional(), code: nonEmpty })),
});

export const CANONICAL_SCHEMAS: Readonly<Record<AnyCanonicalKind, z.ZodType>> = {
  HCP: hcpSchema,
  Organization: organizationSchema,
  PatientProfile: patientProfileSchema,
  Person: personSchema,
  Consent: consentRecordSchema,
  Affiliation: affiliationSchema,
  ProgramEnrollment: programEnrollmentSchema,
  Interaction: interactionSchema,
  CareEvent: careEventSchema,
};

export function isCanonicalKind(kind: string): kind is AnyCanonicalKind {
  return Object.hasOwn(CANONICAL_SCHEMAS, kind);
}

/** Validates a canonical record; issues name paths and zod's reason, never the offending value. */
export function validateCanonical(record: unknown): Outcome<AnyCanonicalRecord> {
  const kind = (record as { kind?: unknown } | null)?.kind;
  if (typeof kind !== 'string' || !isCanonicalKind(kind)) {
    return fail('MAP_CANONICAL_INVALID', [issue('MAP_CANONICAL_INVALID', 'kind', 'unknown canonical kind')]);
  }
  const result = CANONICAL_SCHEMAS[kind].safeParse(record);
  if (result.success) return ok(record as AnyCanonicalRecord);
  return fail(
    'MAP_CANONICAL_INVALID',
    result.error.issues.map((i) =>
      issue('MAP_CANONICAL_INVALID', i.path.map(String).join('.') || kind, `${kind}: ${i.code}`),
    ),
  );
}
