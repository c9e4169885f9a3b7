import { z } from 'zod';
import { DEFAULT_CLOCK_SKEW_SECONDS } from '../../core/fhir/instant.ts';
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
    kind: z
      .literal('smart-backend-services')
      .describe('SMART Backend Services: a signed JWT assertion exchanged for a short-lived access token.'),
    clientId: nonEmpty.describe("The client id the EHR registered for this flow's key."),
    privateKeyFile: nonEmpty.describe('Path to the private JWK (RS384 or ES384), relative to the flow file.'),
    scope: nonEmpty
      .optional()
      .describe('Scopes to request; by default read-only `system/<Type>.rs` for each resource type read.'),
    tokenUrl: httpUrl.optional().describe('Overrides discovery through `.well-known/smart-configuration`.'),
  })
  .strict();

const source = z
  .object({
    kind: z.literal('fhir-r4').describe("An EHR's FHIR R4 API (Epic or any server that speaks it)."),
    system: systemName.describe(
      'Short name of the source system (e.g. `epic`), recorded with every source id and part of every pseudonym: changing it changes them.',
    ),
    baseUrl: httpUrl.describe('The FHIR base URL (the one `metadata` and searches hang off).'),
    auth: z
      .discriminatedUnion('kind', [
        smartAuth,
        z
          .object({ kind: z.literal('none').describe('No authentication: sandboxes and tests only.') })
          .strict(),
      ])
      .describe('How the pipeline authenticates to the source; it asks for read-only scopes.'),
    resources: z
      .array(z.enum(MAPPED_RESOURCE_TYPES))
      .min(1)
      .refine((r) => new Set(r).size === r.length, 'lists a resource type twice')
      .describe('Resource types to read, in this order (parents before children).'),
    pageSize: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(200)
      .describe(
        'Resources per page: the search `_count`, and in both modes the unit the pipeline stages, sends and commits together.',
      ),
    timeoutSeconds: z
      .number()
      .positive()
      .max(600)
      .default(60)
      .describe('Time limit of each HTTP request to the source.'),
    deviations: z
      .object({
        longIds: z.boolean().default(false).describe('Accept resource ids longer than 64 characters.'),
      })
      .strict()
      .default({ longIds: false })
      .describe(
        "Real-world deviations this source is known for, accepted explicitly and only here: `longIds` lets resource ids exceed FHIR's 64 characters (Epic), reported as warnings instead of errors.",
      ),
    mode: z
      .enum(['search', 'bulk'])
      .default('search')
      .describe(
        "How changes are read: `search` (`_lastUpdated` search, paged) or `bulk` (Bulk Data `$export` with `_since`, checkpointed on the manifest's transactionTime, deletions included).",
      ),
    bulk: z
      .object({
        level: z
          .enum(['system', 'patient', 'group'])
          .default('system')
          .describe('Export level: the whole system, the Patient compartment, or one Group.'),
        groupId: nonEmpty.optional().describe('The Group to export when `level` is `group`.'),
        maxWaitMinutes: z
          .number()
          .positive()
          .max(24 * 60)
          .default(120)
          .describe('Give up (and keep the checkpoint) when the export takes longer than this.'),
        exportErrors: z
          .enum(['fail', 'note'])
          .default('fail')
          .describe('Resources the server reports it could not export: fail the run (default) or note them.'),
        exportsAhead: z
          .number()
          .int()
          .min(0)
          .max(8)
          .default(1)
          .describe(
            "Exports of the run's next streams kicked off while one is read, so the server prepares them meanwhile (0: one export at a time, for servers that allow no more). Each runs on the EHR's operational database: raise it only where the EHR's team agrees.",
          ),
      })
      .strict()
      .refine((b) => b.level !== 'group' || b.groupId !== undefined, 'level group needs a groupId')
      .default({ level: 'system', maxWaitMinutes: 120, exportErrors: 'fail', exportsAhead: 1 })
      .describe('Bulk Data export (`mode: bulk`).'),
    overlapSeconds: z
      .number()
      .int()
      .min(0)
      .max(86_400)
      .default(60)
      .describe(
        'Re-read this long before each checkpoint (late commits on the server); repeats are skipped.',
      ),
    serverTimeCheckpoints: z
      .boolean()
      .default(true)
      .describe(
        'Search mode: a complete search moves the checkpoint to when the server answered it (the earlier of its `meta.lastUpdated` and its `Date` header), so a quiet stream stops re-reading its last burst. Safe while the clock stamping the answers is less than `overlapSeconds` ahead of the one stamping the records; turn off where a proxy in front of the EHR keeps a clock of its own.',
      ),
    clockSkewSeconds: z
      .number()
      .int()
      .min(0)
      .max(86_400)
      .default(DEFAULT_CLOCK_SKEW_SECONDS)
      .describe('A meta.lastUpdated this far ahead of the local clock is quarantined as clock skew.'),
  })
  .strict();

const target = z
  .object({
    kind: z
      .literal('veeva-crm')
      .describe('Veeva CRM through the Salesforce REST API (composite upserts by external id).'),
    system: systemName.describe(
      'Short name of the target system (e.g. `veeva`), recorded with every delivery.',
    ),
    baseUrl: httpUrl.describe(
      'Login (My Domain) URL serving /services/oauth2/token; the API instance URL comes from the token answer.',
    ),
    apiVersion: z
      .string()
      .regex(/^v\d{2,3}\.0$/, 'a Salesforce API version such as v62.0')
      .default('v62.0')
      .describe('Salesforce REST API version.'),
    auth: z
      .object({
        kind: z
          .literal('client-credentials')
          .describe(
            'OAuth 2.0 client credentials of a connected app (its run-as user bounds what Sluice may touch).',
          ),
        clientId: nonEmpty.describe("The connected app's consumer key."),
        clientSecret: nonEmpty.describe('Its consumer secret. Prefer `${ENV}` over writing it in the file.'),
      })
      .strict()
      .describe('How the pipeline authenticates to the CRM.'),
    recordTypes: z
      .object({
        hcp: nonEmpty.describe('RecordTypeId of person Accounts (HCPs, from Practitioners).'),
        hco: nonEmpty.describe('RecordTypeId of business Accounts (HCOs, from Organizations).'),
      })
      .strict()
      .describe('Account record type ids of the org (they differ from org to org).'),
    patientProfileObject: nonEmpty
      .default('Patient_Profile__c')
      .describe('Custom object that receives the pseudonymous patient profiles.'),
    lineageField: nonEmpty
      .nullable()
      .default('Sluice_Lineage__c')
      .describe("Field for Sluice's compact lineage note on every record; `null` when the org has none."),
    timeoutSeconds: z
      .number()
      .positive()
      .max(600)
      .default(120)
      .describe('Time limit of each HTTP request to the CRM.'),
    throttle: ThrottlePolicySchema.optional().describe(
      'Flow control for the CRM API: token bucket (rate, burst), adaptive concurrency, retries with backoff honouring Retry-After, circuit breaker (state survives restarts), quota pacing from Sforce-Limit-Info, priority classes and scheduling windows. Defaults are conservative.',
    ),
    priority: nonEmpty
      .default('backfill')
      .describe("The priority class this flow's writes use (a class of `throttle.priorities`)."),
  })
  .strict();

/** A reason an operator or a flow gives (withhold rules, discards, the kill switch): a short lower-case code. */
export const REASON_CODE_PATTERN = /^[a-z][a-z0-9-]{0,40}$/;

const withholdRule = z
  .object({
    resourceType: z.enum(MAPPED_RESOURCE_TYPES).describe('The resource type the rule applies to.'),
    when: nonEmpty.describe('A FHIRPath expression over the source resource; true withholds the record.'),
    reason: z
      .string()
      .regex(REASON_CODE_PATTERN, 'a short lower-case reason code')
      .describe('The reason code counted in the run summary and the audit trail.'),
    delivered: z
      .enum(['keep', 'delete'])
      .default('keep')
      .describe(
        'What earlier runs delivered for a record this rule now withholds: `keep` leaves it at the target as last sent; `delete` removes it there (retraction, counted and audited), e.g. for a patient who died or a record merged into another.',
      ),
  })
  .strict();

const stages = z
  .object({
    validate: z
      .object({
        fhir: z
          .boolean()
          .default(true)
          .describe('FHIR R4 schema validation of every source resource before it is mapped.'),
      })
      .strict()
      .default({ fhir: true })
      .describe('Schema validation; failures are quarantined with every issue (`REC_INVALID_FHIR`).'),
    withhold: z
      .array(withholdRule)
      .default([])
      .describe('Rules that keep records back: counted, checkpointed and audited, never sent.'),
    provenance: z
      .object({
        refuseSecurityLabels: z
          .array(nonEmpty)
          .default([])
          .describe('Security label codes (`meta.security`) that refuse a record.'),
        refuseConsentBasis: z
          .array(z.enum(['base-policy', 'default']))
          .default([])
          .describe('Consent bases treated as partial consent and refused: `base-policy`, `default`.'),
        delivered: z
          .enum(['keep', 'delete'])
          .default('delete')
          .describe(
            'What earlier runs delivered for a record that now carries a refused security label: `delete` removes it at the target (retraction, counted and audited); `keep` leaves it as last sent.',
          ),
      })
      .strict()
      .default({ refuseSecurityLabels: [], refuseConsentBasis: [], delivered: 'delete' })
      .describe(
        'Provenance policy: refuse records whose security labels show a sensitive origin (withheld and audited, never sent). Codes from v3-ActCode / v3-Confidentiality (e.g. 42CFRPart2, PSY, ETH, HIV, R).',
      ),
    pseudonymize: z
      .object({
        key: nonEmpty.describe(
          'The HMAC key: base64 or hex, at least 32 bytes. Prefer `${ENV}` over writing it in the file.',
        ),
        keyId: z
          .string()
          .regex(/^[A-Za-z0-9._-]{1,40}$/, 'letters, digits, dot, dash, underscore')
          .describe(
            'A non-secret name for the key, recorded with what it produced (rotate by changing both).',
          ),
        restrictedZip3: z
          .array(nonEmpty)
          .min(1)
          .default(['hhs-2000'])
          .describe('Restricted ZIP3 lists (config/restricted-zip3.json) whose union becomes 000.'),
      })
      .strict()
      .describe(
        'Keyed pseudonyms (HMAC-SHA256) for patients, and the generalisation of their quasi-identifiers.',
      ),
    consent: z
      .object({
        recipient: z
          .object({
            id: nonEmpty.describe(
              'A reference such as `Organization/crm-recipient`, as consent actors name it.',
            ),
            role: nonEmpty.describe(
              'The actor role code consent provisions use for it (e.g. `IRCP`, information recipient).',
            ),
          })
          .strict()
          .describe('The recipient as consent rules name it: a `Type/id` reference and a role code.'),
        policyVersion: nonEmpty.describe(
          'Version of the consent policy; stamped on every decision and batch.',
        ),
        defaultDecision: z
          .enum(['permit', 'deny'])
          .default('deny')
          .describe('Decision when no consent applies: deny unless the flow says otherwise.'),
        refreshSeconds: z
          .number()
          .min(0)
          .max(3600)
          .default(0)
          .describe(
            'Re-read consents before a send when the last read is older than this (0: before every send).',
          ),
        onRevoke: z
          .enum(['delete', 'ignore'])
          .default('delete')
          .describe(
            'What a revocation does to data already delivered: delete it at the target, or leave it.',
          ),
        cacheSize: z
          .number()
          .int()
          .min(100)
          .max(10_000_000)
          .default(20_000)
          .describe(
            'People whose consents stay in memory (least recently used leave first); the others are read from the state store when needed, so memory does not grow with the population.',
          ),
      })
      .strict()
      .optional()
      .describe(
        "Consent at ingest and send time for patient data: Consent resources are read from the source (stream `Consent`, before the others) and every patient record needs a permit for the flow's purpose and this recipient. A flow that reads patient data without this stage must state why in `stages.withoutConsent`.",
      ),
    withoutConsent: z
      .object({
        basis: z
          .string()
          .trim()
          .min(12, 'state the basis in a sentence (at least 12 characters)')
          // It goes into an audit entry: one line, at most 256 characters (MAX_DETAIL_STRING).
          .max(256, 'at most 256 characters (cite the policy; it is written into the audit trail)')
          // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
          .regex(/^[^\u0000-\u001f\u007f]*$/, 'one line, without control characters')
          .describe(
            'Why patient data may move without consent, as the privacy office would cite it (e.g. "HIPAA 45 CFR 164.506(c)(1): the covered entity\'s own operations"). Written into the audit entry that starts every run.',
          ),
      })
      .strict()
      .optional()
      .describe(
        'A flow that reads patient data (any resource type outside the provider directory) needs a consent stage or this: the stated basis for moving the data without one. A flow with neither is refused.',
      ),
    risk: z
      .object({
        minK: z
          .number()
          .int()
          .min(1)
          .max(1000)
          .default(11)
          .describe('Smallest group of profiles sharing the same quasi-identifiers allowed (k-anonymity).'),
        maxProsecutorRisk: z
          .number()
          .gt(0)
          .max(1)
          .default(0.09)
          .describe('Highest prosecutor re-identification risk allowed (1 / the smallest group).'),
        action: z
          .enum(['hold', 'report'])
          .default('hold')
          .describe(
            "`hold`: the page's profiles are not sent (the rest of the page is); `report`: only noted.",
          ),
      })
      .strict()
      .optional()
      .describe(
        "Re-identification risk of the pseudonymous patient profiles each page would send, over their quasi-identifiers (birth year, ZIP3, gender): below `minK` or above `maxProsecutorRisk` the page's profiles are held (`hold`) or only reported (`report`).",
      ),
    policy: z
      .object({ allowlistFile: nonEmpty.describe('Path of the allowlist file, relative to the flow file.') })
      .strict()
      .optional()
      .describe(
        'The recipient allowlist (a versioned file, relative to the flow file): which objects and fields this recipient may receive for this purpose; everything else is dropped and counted.',
      ),
    deletes: z
      .enum(['delete', 'ignore'])
      .default('delete')
      .describe('What a deletion at the source does: delete the records at the target, or ignore it.'),
    batch: z
      .object({
        maxRecords: z
          .number()
          .int()
          .min(1)
          .max(200)
          .default(200)
          .describe('Records per batch and request (the composite API takes at most 200).'),
        signingKeyFile: nonEmpty
          .optional()
          .describe(
            'Private JWK (ES256 or EdDSA, with a kid) that signs each batch envelope; relative to the flow file.',
          ),
        onItemFailure: z
          .enum(['quarantine-item', 'reject-batch'])
          .default('quarantine-item')
          .describe(
            'A record the target refuses inside a batch: quarantine it and deliver the rest, or reject the whole batch (all or nothing; every record of it is quarantined with the reason).',
          ),
      })
      .strict()
      .default({ maxRecords: 200, onItemFailure: 'quarantine-item' })
      .describe('Consent-aware batches: each sent as one request, in a signed envelope when a key is given.'),
  })
  .strict();

/** Resource types of the provider directory: not patient data (every other type is, failing closed). */
const PROVIDER_DIRECTORY_TYPES: ReadonlySet<string> = new Set([
  'Organization',
  'Practitioner',
  'PractitionerRole',
  'Location',
  'HealthcareService',
  'Endpoint',
  'OrganizationAffiliation',
]);

export const FlowFileSchema = z
  .object({
    flow: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'a lower-case flow name (letters, digits, dashes)')
      .describe("The flow's name: it names its state and audit files and every record of its runs."),
    version: z.literal(1).describe('The flow-file format version.'),
    description: z.string().optional().describe('Free text for people.'),
    purpose: z
      .enum(PURPOSES_OF_USE)
      .describe(
        'HL7 v3 PurposeOfUse the flow moves data for: consent, the allowlist and every audit entry are judged and stamped with it.',
      ),
    source: source.describe("Where records come from: an EHR's FHIR R4 API."),
    target: target.describe('Where records go: a Veeva CRM org.'),
    stages: stages.describe('What happens to each record between source and target.'),
    audit: z
      .object({
        retentionDays: z
          .number()
          .int()
          .min(1)
          .max(36_500)
          .optional()
          .describe(
            'Entries older than this many days are pruned after each run (the log stays verifiable).',
          ),
        signingKeyFile: nonEmpty.describe(
          'Private JWK (Ed25519 or ES256, with a kid) that signs the audit checkpoints.',
        ),
        verifyKeysFile: nonEmpty
          .optional()
          .describe(
            "Public keys (JWKS) `sluice audit verify` trusts; default: the signing key's public half.",
          ),
        checkpointEvery: z
          .number()
          .int()
          .min(1)
          .max(1_000_000)
          .default(1000)
          .describe('Sign a checkpoint at least every this many entries (and at the end of every run).'),
      })
      .strict()
      .describe(
        'The tamper-evident audit trail (hash chain, Merkle tree, signed checkpoints) every decision and send of the flow is written to. Key files are relative to the flow file.',
      ),
    schedule: z
      .object({
        intervalSeconds: z
          .number()
          .int()
          .min(1)
          .max(86_400)
          .default(60)
          .describe('Pause between the end of a run and the start of the next.'),
      })
      .strict()
      .default({ intervalSeconds: 60 })
      .describe('Loop mode: `sluice run` without `--once` runs the flow again and again.'),
    bus: z
      .object({
        nats: z
          .object({
            url: nonEmpty
              .regex(
                /^(nats|tls):\/\/[^,\s]+(,(nats|tls):\/\/[^,\s]+)*$/,
                'nats:// or tls:// server URLs, comma-separated',
              )
              .describe(
                'The NATS servers (JetStream enabled), comma-separated. Credentials in the URL are never printed.',
              ),
            stream: z
              .string()
              .regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, dash, underscore (at most 64)')
              .optional()
              .describe(
                'The JetStream stream of the flow (created when missing); default `SLUICE_` and the flow name.',
              ),
            maxAgeDays: z
              .number()
              .int()
              .min(1)
              .max(3650)
              .default(7)
              .describe(
                'How long the stream keeps a change event: the window `sluice run` can fall behind, and re-read, within.',
              ),
            replicas: z
              .number()
              .int()
              .min(1)
              .max(5)
              .default(1)
              .describe('Copies the JetStream cluster keeps of the stream (1 on a single server).'),
          })
          .strict()
          .describe(
            'NATS JetStream between reading the EHR and the rest of the pipeline: `sluice ingest` reads the source from its own checkpoints and publishes each record as a change event (sealed under `state.encryption`), ordered per resource type; `sluice run` reads the events instead of the EHR. The EHR keeps being read while the CRM is down or slow, nothing read is lost while the events are kept (`maxAgeDays`), and reading and sending can run on different machines (with `state.postgres`).',
          ),
      })
      .strict()
      .optional()
      .describe(
        'The event bus between source and pipeline. Absent: `sluice run` reads the source itself (embedded).',
      ),
    state: z
      .object({
        dir: nonEmpty
          .default('.sluice')
          .describe(
            "Folder of the flow's SQLite files (state, audit trail, breaker; only the breaker with `state.postgres`), relative to the working directory.",
          ),
        changeLogDays: z
          .number()
          .int()
          .min(0)
          .max(3650)
          .default(7)
          .describe(
            'Source records are kept this many days for `sluice replay` (0 keeps none); older copies are erased after each run.',
          ),
        encryption: z
          .object({
            key: nonEmpty.describe(
              'The secret: base64 or hex, at least 32 bytes. Prefer `${ENV}` over writing it in the file.',
            ),
            keyId: z
              .string()
              .regex(/^[A-Za-z0-9._-]{1,40}$/, 'letters, digits, dot, dash, underscore')
              .describe(
                'A non-secret name for the key, written with every value it seals; a value reads only under the key it names.',
              ),
            previous: z
              .array(
                z
                  .object({
                    key: nonEmpty.describe('The secret of a key used before.'),
                    keyId: z
                      .string()
                      .regex(/^[A-Za-z0-9._-]{1,40}$/, 'letters, digits, dot, dash, underscore')
                      .describe('The name it sealed under.'),
                  })
                  .strict(),
              )
              .default([])
              .describe(
                'Keys used before a rotation: they open what they sealed (new values are sealed under `key`). Keep one as long as values it sealed are kept: an open quarantine entry keeps its record until it is released, discarded or superseded; the change log drops entries after `changeLogDays`.',
              ),
          })
          .strict()
          .optional()
          .describe(
            'Encrypts the record copies the state keeps — quarantined records and the change log, whole source resources — with AES-256-GCM. Without it they are stored as read: keep `state.dir` on an encrypted volume.',
          ),
        postgres: z
          .object({
            url: nonEmpty
              .regex(/^postgres(ql)?:\/\//, 'a postgres:// or postgresql:// connection URL')
              .describe(
                'The PostgreSQL server, as a connection URL. Prefer `${ENV}`: a password in it is a secret (it is never printed).',
              ),
            schema: z
              .string()
              .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'lower-case letters, digits and underscores, at most 63')
              .default('sluice')
              .describe(
                "The schema that holds Sluice's tables (created when missing); flows sharing it keep apart by name.",
              ),
            poolSize: z
              .number()
              .int()
              .min(1)
              .max(64)
              .default(4)
              .describe('Connections each Sluice process keeps to the server.'),
          })
          .strict()
          .optional()
          .describe(
            "Cluster mode: the flow's state (checkpoints, ledger, quarantine, change log, runs, kill switch) and its audit trail live in PostgreSQL instead of SQLite files, so any machine can run the flow. One process runs a flow at a time (a lease held in the server): another one started for the same flow waits (`sluice run` loops) or is refused (`--once`, `FLOW_BUSY`) until it ends — or until its machine dies, which releases the lease. The circuit breaker stays in `state.dir` on each machine.",
          ),
      })
      .strict()
      .default({ dir: '.sluice', changeLogDays: 7 })
      .describe('Checkpoints, delivery ledger, quarantine, change log and run history.'),
  })
  .strict()
  .superRefine((flow, ctx) => {
    // A row PostgreSQL deletes lingers (dead tuples, WAL, archives, replicas) where SQLite zeroes it:
    // whole source records go to a server only sealed.
    if (flow.state.postgres && !flow.state.encryption) {
      ctx.addIssue({
        code: 'custom',
        path: ['state', 'encryption'],
        message:
          'cluster mode (state.postgres) keeps quarantined records and the change log in a server, where erased rows stay in its write-ahead log, backups and replicas: set state.encryption',
      });
    }
    // Change events are whole source records: on a bus only sealed, so that it neither reads nor forges them.
    if (flow.bus?.nats && !flow.state.encryption) {
      ctx.addIssue({
        code: 'custom',
        path: ['state', 'encryption'],
        message:
          'the event bus (bus.nats) carries whole source records: set state.encryption, which seals each event and lets only holders of the key publish one',
      });
    }
    // Fail closed: patient data never moves on the purpose alone without someone having said why.
    const patientData = flow.source.resources.filter((t) => !PROVIDER_DIRECTORY_TYPES.has(t));
    if (patientData.length > 0 && !flow.stages.consent && !flow.stages.withoutConsent) {
      ctx.addIssue({
        code: 'custom',
        path: ['stages', 'consent'],
        message: `the flow reads patient data (${patientData.join(', ')}): add a consent stage, or state in stages.withoutConsent.basis why none is needed`,
      });
    }
    if (flow.stages.consent && flow.stages.withoutConsent) {
      ctx.addIssue({
        code: 'custom',
        path: ['stages', 'withoutConsent'],
        message: 'a flow with a consent stage cannot also do without one: remove one of the two',
      });
    }
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
