import { z } from 'zod';
import { SluiceError } from '../errors/sluice-error.ts';

/**
 * Identity resolution settings: the strict precedence of deterministic rules and the Fellegi–Sunter
 * m/u probabilities and thresholds. Defaults are conservative: a false merge of two people is worse
 * than a missed link, which an operator can still make from the review band.
 */

export const DETERMINISTIC_RULES = [
  'enterprise-id',
  'mrn',
  'npi',
  'verified-email',
  'phone',
  'name-dob-postal',
] as const;
export type DeterministicRule = (typeof DETERMINISTIC_RULES)[number];

export const PROBABILISTIC_FIELDS = [
  'givenName',
  'familyName',
  'birthDate',
  'gender',
  'postalCode',
  'addressLine',
  'city',
  'phone',
  'email',
] as const;
export type ProbabilisticField = (typeof PROBABILISTIC_FIELDS)[number];

const probability = z.number().gt(0).lt(1);
const weightSpec = z.strictObject({ m: probability, u: probability });

export const identityConfigSchema = z
  .strictObject({
    precedence: z.array(z.enum(DETERMINISTIC_RULES)).min(1),
    weights: z.strictObject(
      Object.fromEntries(PROBABILISTIC_FIELDS.map((f) => [f, weightSpec])) as Record<
        ProbabilisticField,
        typeof weightSpec
      >,
    ),
    /** Jaro–Winkler similarity at or above which two names agree. */
    nameAgreement: z.number().gt(0).lte(1),
    /** Total weight (log2) at or above which records link automatically. */
    matchThreshold: z.number(),
    /** Total weight at or above which (and below the match threshold) a pair is held for review. */
    reviewThreshold: z.number(),
  })
  .refine((c) => c.reviewThreshold < c.matchThreshold, {
    message: 'reviewThreshold must be below matchThreshold',
    path: ['reviewThreshold'],
  })
  .refine((c) => new Set(c.precedence).size === c.precedence.length, {
    message: 'a rule appears twice in precedence',
    path: ['precedence'],
  });
export type IdentityConfig = z.infer<typeof identityConfigSchema>;

export const DEFAULT_IDENTITY_CONFIG: IdentityConfig = {
  precedence: [...DETERMINISTIC_RULES],
  weights: {
    givenName: { m: 0.95, u: 0.01 },
    familyName: { m: 0.95, u: 0.005 },
    birthDate: { m: 0.97, u: 0.0003 },
    gender: { m: 0.98, u: 0.5 },
    postalCode: { m: 0.8, u: 0.01 },
    addressLine: { m: 0.7, u: 0.0005 },
    city: { m: 0.8, u: 0.02 },
    phone: { m: 0.7, u: 0.0001 },
    email: { m: 0.8, u: 0.0001 },
  },
  nameAgreement: 0.92,
  matchThreshold: 18,
  reviewThreshold: 8,
};

/** Parses a configuration; every problem is named by its key (IDENTITY_CONFIG_INVALID). */
export function parseIdentityConfig(input: unknown): IdentityConfig {
  const result = identityConfigSchema.safeParse(input);
  if (result.success) return result.data;
  const errors = result.error.issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`);
  throw new SluiceError('IDENTITY_CONFIG_INVALID', `Identity configuration invalid: ${errors.join('; ')}`, {
    details: { errors },
  });
}
