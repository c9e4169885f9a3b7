import { z } from 'zod';
import { MAPPED_RESOURCE_TYPES } from '../../core/mapping/fhir-to-canonical.ts';
import { DEFAULT_PRIORITIES, ThrottlePolicySchema } from '../../delivery/flow-control/policy.ts';

/**
 * The flow file, version 1: what moves from which source to which target, for what purpose, through
 * which stages. Objects are strict: a misspelt key is an error, not a silently ignored setting.
 */

/** HL7 v3 PurposeOfUse codes a flow may declare (http://terminology.hl7.org/ValueSet/v3-PurposeOfUse). */
export const PURPOSES_OF_USE = [
  'TREAT',
  'ETREAT',
  'CAREMGT',
  'COC',
  'HOPERAT',
  'HPAYMT',
  'HRESCH',
  'CLINTRCH',
  'PUBHLTH',
  'PATRQT',
  'PATADMIN',
  'HMARKT',
] as const;

const systemName = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,31}$/, 'a lower-case system name (letters, digits, dashes; up to 32 characters)');
const httpUrl = z
  .string()
  .url('an absolute http(s) URL')
  .refine((u) => /^https?:\/\//.test(u), 'an absolute http(s) URL');
const nonEmpty = z.string().min(1, 'must not be empty');

const smartAuth = z
  .object({
    kind: z.literal('smart-backend-services'),
    clientId: nonEmpty,
    /** Path to the private JWK (RS384 or ES384), relative to the flow file. */
    privateKeyFile: nonEmpty,
    /** Scopes to request; by default read-only `system/<Type>.rs` for each resource type read. */
    scope: nonEmpty.optional(),
    /** Overrides discovery through `.well-known/smart-configuration`. */
    tokenUrl: httpUrl.optional(),
  })
  .strict();

const source = z
  .object({
    kind: z.literal('fhir-r4'),
    system: systemName,
    baseUrl: httpUrl,
    auth: z.discriminatedUnion('kind', [smartAuth, z.object({ kind: z.literal('none') }).strict()]),
    /** Resource types to read, in this order (parents before children). */
    resources: z
      .array(z.enum(MAPPED_RESOURCE_TYPES))
      .min(1)
      .refine((r) => new Set(r).size === r.length, 'lists a resource type twice'),
    pageSize: z.number().int().min(1).max(1000).default(200),
    timeoutSeconds: z.number().positive().max(600).default(60),
    /**
     * Real-world deviations this source is known for, accepted explicitly and only here: `longIds`
     * lets resource ids exceed FHIR's 64 characters (Epic), reported as warnings instead of errors.
     */
    deviations: z
      .object({ longIds: z.boolean().default(false) })
      .strict()
      .default({ longIds: false }),
    /**
     * How changes are read: `search` (`_lastUpdated` search, paged) or `bulk` (Bulk Data `$export`
     * with `_since`, checkpointed on the manifest's transactionTime, deletions included).
     */
    mode: z.enum(['search', 'bulk']).default('search'),
    bulk: z
      .object({
        /** Export level: the whole system, the Patient compartment, or one Group. */
        level: z.enum(['system', 'patient', 'group']).default('system'),
        groupId: nonEmpty.optional(),
        /** Give up (and keep the checkpoint) when the export takes longer than this. */
        maxWaitMinutes: z
          .number()
          .positive()
          .max(24 * 60)
          .default(120),
        /** Resources the server reports it could not export: fail the run (default) or note them. */
        exportErrors: z.enum(['fail', 'note']).default('fail'),
        /**
         * Exports of the run's next streams kicked off while one is read, so the server prepares them
         * meanwhile (0: one export at a time, for servers that allow no more). Each runs on the EHR's
         * operational database: raise it only where the EHR's team agrees.
         */
        exportsAhead: z.number().int().min(0).max(8).default(1),
      })
      .strict()
      .refine((b) => b.level !== 'group' || b.groupId !== undefined, 'level group needs a groupId')
      .default({ level: 'system', maxWaitMinutes: 120, exportErrors: 'fail', exportsAhead: 1 }),
    /** Re-read this long before each checkpoint (late commits on the server); repeats are skipped. */
    overlapSeconds: z.number().int().min(0).max(86_400).default(60),
    /**
     * Search mode: a complete search moves the checkpoint to when the server answered it (the earlier
     * of its `meta.lastUpdated` and its `Date` header), so a quiet stream stops re-reading its last
     * burst. Safe while the clock stamping the answers is less than `overlapSeconds` ahead of the one
     * stamping the records; turn off where a proxy in front of the EHR keeps a clock of its own.
     */
    serverTimeCheckpoints: z.boolean().default(true),
    /** A meta.lastUpdated this far ahead of the local clock is quarantined as clock skew. */
    clockSkewSeconds: z.number().int().min(0).max(86_400).default(300),
  })
  .strict();

const target = z
  .object({
    kind: z.literal('veeva-crm'),
    system: systemName,
    /** Login (My Domain) URL serving /services/oauth2/token; the API instance URL comes from the token answer. */
    baseUrl: httpUrl,
    apiVersion: z
      .string()
      .regex(/^v\d{2,3}\.0$/, 'a Salesforce API version such as v62.0')
      .default('v62.0'),
    auth: z
      .object({
        kind: z.literal('client-credentials'),
        clientId: nonEmpty,
        clientSecret: nonEmpty,
      })
      .strict(),
    recordTypes: z.object({ hcp: nonEmpty, hco: nonEmpty }).strict(),
    patientProfileObject: nonEmpty.default('Patient_Profile__c'),
    /** Field for Sluice's compact lineage note on every record; `null` when the org has none. */
    lineageField: nonEmpty.nullable().default('Sluice_Lineage__c'),
    timeoutSeconds: z.number().positive().max(600).default(120),
    /**
     * Flow control for the CRM API: token bucket (rate, burst), adaptive concurrency, retries with
     * backoff honouring Retry-After, circuit breaker (state survives restarts), quota pacing from
     * Sforce-Limit-Info, priority classes and scheduling windows. Defaults are conservative.
     */
    throttle: ThrottlePolicySchema.optional(),
    /** The priority class this flow's writes use (a class of `throttle.priorities`). */
    priority: nonEmpty.default('backfill'),
  })
  .strict();

const withholdRule = z
  .object({
    resourceType: z.enum(MAPPED_RESOURCE_TYPES),
    when: nonEmpty,
    reason: z.string().regex(/^[a-z][a-z0-9-]{0,40}$/, 'a short lower-case reason code'),
  })
  .strict();

const stages = z
  .object({
    validate: z
      .object({
        /** FHIR R4 schema validation of every source resource before it is mapped. */
        fhir: z.boolean().default(true),
      })
      .strict()
      .default({ fhir: true }),
    withhold: z.array(withholdRule).default([]),
    /**
     * Provenance policy: refuse records whose security labels show a sensitive origin (withheld and
     * audited, never sent). Codes from v3-ActCode / v3-Confidentiality (e.g. 42CFRPart2, PSY, ETH, HIV, R).
     */
    provenance: z
      .object({
        refuseSecurityLabels: z.array(nonEmpty).default([]),
        /** Consent bases treated as partial consent and refused: `base-policy`, `default`. */
        refuseConsentBasis: z.array(z.enum(['base-policy', 'default'])).default([]),
      })
      .strict()
      .default({ refuseSecurityLabels: [], refuseConsentBasis: [] }),
    pseudonymize: z
      .object({
        /** The HMAC key: base64 or hex, at least 32 bytes. Prefer `${ENV}` over writing it in the file. */
        key: nonEmpty,
        /** A non-secret name for the key, recorded with what it produced (rotate by changing both). */
        keyId: z.string().regex(/^[A-Za-z0-9._-]{1,40}$/, 'letters, digits, dot, dash, underscore'),
        /** Restricted ZIP3 lists (config/restricted-zip3.json) whose union becomes 000. */
        restrictedZip3: z.array(nonEmpty).min(1).default(['hhs-2000']),
      })
      .strict(),
    /**
     * Consent at ingest and send time for patient data: Consent resources are read from the source
     * (stream `Consent`, before the others) and every patient record needs a permit for the flow's
     * purpose and this recipient. Without this stage patient data moves on the flow's purpose alone.
     */
    consent: z
      .object({
        /** The recipient as consent rules name it: a `Type/id` reference and a role code. */
        recipient: z.object({ id: nonEmpty, role: nonEmpty }).strict(),
        /** Version of the consent policy; stamped on every decision and batch. */
        policyVersion: nonEmpty,
        /** Decision when no consent applies: deny unless the flow says otherwise. */
        defaultDecision: z.enum(['permit', 'deny']).default('deny'),
        /** Re-read consents before a send when the last read is older than this (0: before every send). */
        refreshSeconds: z.number().min(0).max(3600).default(0),
        /** What a revocation does to data already delivered: delete it at the target, or leave it. */
        onRevoke: z.enum(['delete', 'ignore']).default('delete'),
        /**
         * People whose consents stay in memory (least recently used leave first); the others are read
         * from the state store when needed, so memory does not grow with the population.
         */
        cacheSize: z.number().int().min(100).max(10_000_000).default(20_000),
      })
      .strict()
      .optional(),
    /**
     * Re-identification risk of the pseudonymous patient profiles each page would send, over their
     * quasi-identifiers (birth year, ZIP3, gender): below `minK` or above `maxProsecutorRisk` the page's
     * profiles are held (`hold`) or only reported (`report`).
     */
    risk: z
      .object({
        minK: z.number().int().min(1).max(1000).default(11),
        maxProsecutorRisk: z.number().gt(0).max(1).default(0.09),
        action: z.enum(['hold', 'report']).default('hold'),
      })
      .strict()
      .optional(),
    /**
     * The recipient allowlist (a versioned file, relative to the flow file): which objects and fields
     * this recipient may receive for this purpose; everything else is dropped and counted.
     */
    policy: z.object({ allowlistFile: nonEmpty }).strict().optional(),
    /** What a deletion at the source does: delete the records at the target, or ignore it. */
    deletes: z.enum(['delete', 'ignore']).default('delete'),
    batch: z
      .object({
        maxRecords: z.number().int().min(1).max(200).default(200),
        /** Private JWK (ES256 or EdDSA, with a kid) that signs each batch envelope; relative to the flow file. */
        signingKeyFile: nonEmpty.optional(),
        /**
         * A record the target refuses inside a batch: quarantine it and deliver the rest, or reject the
         * whole batch (all or nothing; every record of it is quarantined with the reason).
         */
        onItemFailure: z.enum(['quarantine-item', 'reject-batch']).default('quarantine-item'),
      })
      .strict()
      .default({ maxRecords: 200, onItemFailure: 'quarantine-item' }),
  })
  .strict();

export const FlowFileSchema = z
  .object({
    flow: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'a lower-case flow name (letters, digits, dashes)'),
    version: z.literal(1),
    description: z.string().optional(),
    purpose: z.enum(PURPOSES_OF_USE),
    source,
    target,
    stages,
    /**
     * The tamper-evident audit trail (hash chain, Merkle tree, signed checkpoints) every decision and
     * send of the flow is written to. Key files are relative to the flow file.
     */
    audit: z
      .object({
        /** Entries older than this many days are pruned after each run (the log stays verifiable). */
        retentionDays: z.number().int().min(1).max(36_500).optional(),
        /** Private JWK (Ed25519 or ES256, with a kid) that signs the audit checkpoints. */
        signingKeyFile: nonEmpty,
        /** Public keys (JWKS) `sluice audit verify` trusts; default: the signing key's public half. */
        verifyKeysFile: nonEmpty.optional(),
        /** Sign a checkpoint at least every this many entries (and at the end of every run). */
        checkpointEvery: z.number().int().min(1).max(1_000_000).default(1000),
      })
      .strict(),
    schedule: z
      .object({ intervalSeconds: z.number().int().min(1).max(86_400).default(60) })
      .strict()
      .default({ intervalSeconds: 60 }),
    state: z
      .object({
        dir: nonEmpty.default('.sluice'),
        /** Source records are kept this many days for `sluice replay` (0 keeps none). */
        changeLogDays: z.number().int().min(0).max(3650).default(7),
      })
      .strict()
      .default({ dir: '.sluice', changeLogDays: 7 }),
  })
  .strict()
  .superRefine((flow, ctx) => {
    const classes = Object.keys(flow.target.throttle?.priorities ?? DEFAULT_PRIORITIES);
    if (!classes.includes(flow.target.priority)) {
      ctx.addIssue({
        code: 'custom',
        path: ['target', 'priority'],
        message: `not a priority class of target.throttle (${classes.join(', ')})`,
      });
    }
  });

export type FlowFile = z.output<typeof FlowFileSchema>;
