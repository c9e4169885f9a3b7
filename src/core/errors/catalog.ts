/**
 * The error catalog: every stable code Sluice can report, with what it means and what the operator
 * should do. Codes are never reused or renamed; `docs/errors.md` is generated from this table and a
 * test keeps the two equal.
 *
 * Codes that name a *record-level* problem (the record goes to quarantine) carry `quarantine: true`;
 * the others are failures of a run, a request or a configuration.
 */
export interface ErrorSpec {
  /** One line: what happened. */
  readonly title: string;
  /** What the operator should do about it. */
  readonly action: string;
  /** True when the code names a problem with one record, which is quarantined while the run goes on. */
  readonly quarantine?: boolean;
}

export const ERROR_CATALOG = {
  // Configuration and flow files
  CFG_FLOW_UNREADABLE: {
    title: 'The flow file could not be read or is not valid YAML/JSON.',
    action: 'Check the path and the file syntax; the message names the line when the parser knows it.',
  },
  CFG_ARGUMENTS_INVALID: {
    title: 'The command line does not say what to act on, or says it twice; nothing was done.',
    action:
      'Give what `sluice COMMAND --help` asks for (e.g. an entry id, or a selection with --code, --stream or --all).',
  },
  CFG_FLOW_INVALID: {
    title: 'The flow file failed validation; nothing was moved.',
    action:
      'Fix every listed key (dotted path) and run again. `sluice flow check FILE` validates without running.',
  },
  CFG_ENV_MISSING: {
    title: 'A ${VAR} reference in the flow file names an environment variable that is not set.',
    action: 'Export the variable, or give a default in the file as ${VAR:-default}.',
  },
  CFG_KEY_INVALID: {
    title: 'A key (signing key, pseudonymisation key) is missing, too short or not in the expected format.',
    action: 'Provide the key named in the message; pseudonymisation keys need at least 32 bytes of entropy.',
  },
  CFG_FILE_MISSING: {
    title: 'A file named by the configuration does not exist or cannot be read.',
    action: 'Check the path; relative paths are resolved against the directory of the flow file.',
  },

  // Source (EHR) side
  SRC_AUTH_FAILED: {
    title: 'The source refused the backend-services token request.',
    action:
      'Check the client id, that the registered JWKS holds the public half of the configured private key, and the token URL.',
  },
  SRC_FORBIDDEN: {
    title: 'The source refused a request for lack of scope or permission.',
    action: 'Grant the client the system/* scopes the flow needs, or remove the resource type from the flow.',
  },
  SRC_HTTP_ERROR: {
    title: 'The source answered a request with an unexpected HTTP status.',
    action: 'See the status and OperationOutcome summary in the message; retry later if it is a 5xx.',
  },
  SRC_UNREACHABLE: {
    title: 'The source could not be reached (connection refused, reset or timed out).',
    action: 'Check source.baseUrl and that the server is up; the run stops and the checkpoint does not move.',
  },
  SRC_BAD_RESPONSE: {
    title: 'The source sent a response that is not the FHIR JSON Sluice asked for.',
    action:
      'Check that source.baseUrl points at a FHIR R4 base; the message says what was wrong with the body.',
  },

  // Target (CRM) side
  TGT_AUTH_FAILED: {
    title: 'The target refused the OAuth token request.',
    action: 'Check target.auth client id and secret, and the token URL.',
  },
  TGT_HTTP_ERROR: {
    title: 'The target answered a request with an unexpected HTTP status.',
    action: 'See the status and Salesforce error codes in the message; retry later if it is a 5xx.',
  },
  TGT_UNREACHABLE: {
    title: 'The target could not be reached (connection refused, reset or timed out).',
    action:
      'Check target.baseUrl and that the server is up; undelivered records stay pending for the next run.',
  },
  TGT_LIMIT_EXCEEDED: {
    title: 'The target reported that its API request quota is exhausted (REQUEST_LIMIT_EXCEEDED).',
    action:
      'Wait for the rolling quota to recover or raise the org limit; the checkpoint did not move past undelivered records.',
  },
  TGT_BAD_RESPONSE: {
    title: 'The target sent a response Sluice could not interpret.',
    action: 'Check target.baseUrl and target.apiVersion; the message says what was wrong with the body.',
  },

  // Record-level problems: the record is quarantined and the run goes on
  REC_UNPARSEABLE: {
    title: 'A source record is not valid JSON or not a FHIR resource object.',
    action: 'Inspect it with `sluice quarantine show`; fix it at the source, then release or discard it.',
    quarantine: true,
  },
  REC_INVALID_FHIR: {
    title: 'A source resource fails FHIR R4 validation.',
    action: 'Every issue is listed with its path; fix the resource at the source, then release it.',
    quarantine: true,
  },
  REC_UNSUPPORTED_TYPE: {
    title: 'The flow received a resource type it has no mapping for.',
    action: 'Add a mapping for the type or remove it from source.resources.',
    quarantine: true,
  },
  REC_FUTURE_TIMESTAMP: {
    title: "A source record's meta.lastUpdated lies further in the future than the allowed clock skew.",
    action:
      "Check the source's and this host's clocks (NTP); the checkpoint did not jump ahead. Release the record once the clocks agree.",
    quarantine: true,
  },
  REC_OUT_OF_ORDER: {
    title: 'A source record arrived in a version older than the one already processed.',
    action:
      'Nothing was sent; the newer version stands. Check the source (a replayed or re-exported old file); discard the entry once understood.',
    quarantine: true,
  },
  MAP_INVALID_IDENTIFIER: {
    title: 'An identifier that drives matching (for example an NPI) is present but malformed.',
    action:
      'Correct the identifier at the source (an NPI has 10 digits and a valid check digit), then release the record.',
    quarantine: true,
  },
  MAP_REQUIRED_MISSING: {
    title: 'A field the target requires is missing from the source record.',
    action: 'Complete the record at the source (the message names the field), then release it.',
    quarantine: true,
  },
  TGT_RECORD_REJECTED: {
    title: 'The target rejected a record (validation rule, unknown field, missing parent).',
    action:
      'See the target error code and field in the quarantine entry; fix the mapping or the data, then release.',
    quarantine: true,
  },
  TGT_AMBIGUOUS_MATCH: {
    title: 'The external id matched several target records (HTTP 300); nothing was written.',
    action:
      'Merge or fix the duplicate records in the CRM, then release the record. It is never retried blindly.',
    quarantine: true,
  },

  // Store
  STORE_OPEN_FAILED: {
    title: 'The state store could not be opened.',
    action:
      'Check that the state directory exists and is writable, and that no other process holds the database; with `state.postgres`, that the server in the message is up and reachable from this machine and that the URL (user, password, database) is right.',
  },
  STORE_MIGRATION_FAILED: {
    title: 'A state store migration failed; the store was left at its previous version.',
    action: 'Restore from backup or report the message; do not edit the store by hand.',
  },
  STORE_WRITE_FAILED: {
    title: 'A commit to the state store failed; the page was rolled back and its checkpoint did not move.',
    action: 'Check disk space and permissions of the state directory, then run again; nothing is skipped.',
  },
  STATE_DEFINITION_CHANGED: {
    title: 'The flow definition changed since its checkpoints were written.',
    action:
      'Decide explicitly: `sluice run FLOW --reset` starts from the beginning (the ledger prevents duplicate writes), or restore the previous definition.',
  },
  STATE_ENVIRONMENT_CHANGED: {
    title: 'The flow now points at another source or target than the one its checkpoints were taken against.',
    action:
      'Use a separate state.dir per environment, or decide explicitly with `sluice run FLOW --reset` (or `--from TIME`).',
  },
  STORE_NEWER_SCHEMA: {
    title: 'The state store was written by a newer Sluice.',
    action: 'Upgrade Sluice, or point the flow at a different state directory.',
  },
  STATE_PAYLOAD_LOCKED: {
    title: 'A record copy in the state store is encrypted and the flow names no state.encryption key.',
    action:
      'Set state.encryption (key and keyId) to the key the state was written with, from the secret store it was kept in.',
  },
  STATE_PAYLOAD_KEY_MISMATCH: {
    title: 'A record copy in the state store is encrypted under another key id than the flow names.',
    action:
      'Configure the key it names (the error gives its id). After a rotation, records sealed under the old key read only with it.',
  },
  STATE_PAYLOAD_TAMPERED: {
    title:
      'An encrypted record copy in the state store does not open: altered, moved, or a wrong secret under the right key id.',
    action:
      'Check that state.encryption.key is the secret that keyId names; if it is, treat the state file as tampered with and restore it from backup.',
  },

  // Delivery flow control (src/delivery/flow-control)
  FLOW_HALTED: {
    title:
      "The flow's kill switch is engaged (`sluice halt`): nothing more of it is sent; what was read and not sent stays behind its checkpoint.",
    action:
      'See why and since when with `sluice status FLOW` (who engaged it is in the audit trail); once it is safe, `sluice resume FLOW --reason CODE`. Nothing is lost: the next run sends what this one held back.',
  },
  BUS_UNAVAILABLE: {
    title: 'The event bus (NATS JetStream, `bus.nats`) could not be reached or refused a request.',
    action:
      'Check that the NATS servers in the message are up with JetStream enabled and reachable from this machine, and the credentials in `bus.nats.url`. Nothing is lost: events not acknowledged are published again by the next `sluice ingest`, and `sluice run` reads on from its checkpoints.',
  },
  BUS_STREAM_MISMATCH: {
    title: "A JetStream stream of the flow's name exists but holds other subjects than `<STREAM>.>`.",
    action:
      'Name another stream in `bus.nats.stream`, or remove the one in the way if nothing needs it (`nats stream rm`).',
  },
  BUS_EVENTS_EXPIRED: {
    title:
      "The flow's event stream discarded change events `sluice run` had not read yet (older than `bus.nats.maxAgeDays`), or the run starts from the beginning of a stream that no longer holds it.",
    action:
      'Nothing was sent from a gap: the run stopped before reading. Run `sluice ingest FLOW --reset` to publish every record of the EHR again (the run skips versions it already processed), then `sluice run FLOW`. Deletions the EHR reported in the gap are not in that snapshot (it lists what exists): check for records deleted at the EHR meanwhile. Raise `bus.nats.maxAgeDays` if the run can fall this far behind.',
  },
  BUS_STREAM_REPLACED: {
    title:
      "The flow's event stream is not the one its checkpoints were taken on: it was deleted and created again, or the flow file now names another stream (`bus.nats.stream`), and its sequences started over.",
    action:
      'Nothing was read or published past the change. Run `sluice ingest FLOW --reset` to publish every record of the EHR into this stream after a snapshot mark; `sluice run FLOW` then reads it from its beginning (skipping versions it already processed). Deletions the earlier stream held that the run had not read are not in the snapshot: check for records deleted at the EHR meanwhile. If the flow file names the wrong stream, put the right name back instead.',
  },
  FLOW_BUSY: {
    title:
      'Another Sluice process holds the lease of this flow (cluster mode, `state.postgres`): one process runs a flow at a time.',
    action:
      'Nothing to repair: the message names the host and process that runs it. A `sluice run` loop waits and takes over when that process ends or its machine dies; stop the other process first if this one should run now.',
  },
  FLOW_LEASE_LOST: {
    title:
      "The flow's lease was lost: the connection holding it failed (PostgreSQL restarted or unreachable), or another process took the flow over while this one was still committing (its page was refused: the lease no longer carries this process's fencing token). The run stopped so that only one process writes the flow's state.",
    action:
      'Check the PostgreSQL server and the network to it. Nothing is lost: what the run read and did not commit stays behind its checkpoint for whichever process holds the flow now (records sent in a page that was not committed are sent again as upserts on their external ids: written again, never duplicated); a `sluice run` loop takes the lease again when it can.',
  },
  FLOW_SHARED_LIMIT_UNAVAILABLE: {
    title:
      'The shared rate (`target.throttle.shared`, counted in Redis) could not be asked for a turn: nothing was sent, so the processes that share it cannot overrun the org together.',
    action:
      'Check that the Redis server in the message is up and reachable from this machine, and the credentials in `shared.redis`. Nothing is lost: the page that was to be sent is repeated by the next run.',
  },
  FLOW_CIRCUIT_OPEN: {
    title:
      'The circuit breaker for a target endpoint is open after repeated server failures; nothing was sent.',
    action:
      'Check the endpoint health (5xx, timeouts); the breaker probes again after breaker.halfOpenAfterMs and undelivered records stay pending.',
  },
  FLOW_QUEUE_FULL: {
    title: 'A delivery was refused because the endpoint queue is at its configured bound.',
    action:
      'Deliver with bounded concurrency (await each run), or raise throttle.maxQueueDepth for the endpoint.',
  },
  FLOW_PRIORITY_UNKNOWN: {
    title: 'A delivery named a priority class the endpoint throttle policy does not define.',
    action: 'Add the class under throttle.priorities for the endpoint, or use one of the listed classes.',
  },
  FLOW_QUOTA_HOLD: {
    title: 'Deliveries to the target are held because its daily API quota is (nearly) spent.',
    action:
      'Wait for the rolling 24-hour quota to recover or raise the org allocation; held work resumes on its own. Tune throttle.quota.stopAt to reserve more headroom.',
  },

  // Consent engine and signed batch envelopes (src/core/consent, src/core/batch)
  CONSENT_MALFORMED: {
    title:
      'A consent record is not a recognisable Consent / Multichannel_Consent_vod__c or is missing a required element.',
    action:
      'Every issue names the path; fix the consent at the source and release it. Until then the person is governed by the remaining consents or the default (deny).',
    quarantine: true,
  },
  CONSENT_STATUS_INVALID: {
    title: 'A consent has no status or a status Sluice does not know.',
    action:
      'Set the status at the source (FHIR: draft | proposed | active | rejected | inactive | entered-in-error), then release the consent.',
    quarantine: true,
  },
  CONSENT_PERIOD_INVALID: {
    title: 'A date or period in a consent cannot be parsed or ends before it starts.',
    action: 'Correct the date named by the path at the source (FHIR date/dateTime format), then release it.',
    quarantine: true,
  },
  CONSENT_PROVISION_TYPE_UNKNOWN: {
    title: 'A consent rule is neither permit nor deny (FHIR provision.type, Veeva Opt_Type_vod__c).',
    action:
      'Use permit/deny (Veeva: Opt_In_vod/Opt_Out_vod picklist API names) at the source, then release the consent.',
    quarantine: true,
  },
  CONSENT_SUBJECT_MISSING: {
    title: 'A consent names no person it applies to (FHIR Consent.patient, Veeva Account_vod__c).',
    action: 'Link the consent to its patient or account at the source, then release it.',
    quarantine: true,
  },
  CONSENT_CHANNEL_UNMAPPED: {
    title: 'A Veeva consent is for a channel (consent record type) that has no entry in the channel table.',
    action:
      'Add the record type to the Veeva channel table (purposes and resource types it governs), then release the consent.',
    quarantine: true,
  },
  BATCH_KEY_INVALID: {
    title:
      'An item could not be batched because a batch-key part (purpose, scope, policy version, role, geography) is empty.',
    action:
      'Fix the flow so every item carries all batch-key parts; items without a permit decision are never batched.',
  },
  BATCH_ENVELOPE_MALFORMED: {
    title:
      'A batch envelope is not a compact JWS of the expected type, or its payload is not a valid envelope.',
    action: 'Reject the batch and ask the sender to resend it; do not process its items.',
  },
  BATCH_SIGNING_KEY_UNKNOWN: {
    title: 'A batch envelope names a signing key id (kid) that is not in the trusted key set.',
    action:
      'Refresh the trusted JWKS from the sender (key rotation); keep retired public keys there while their batches may still arrive.',
  },
  BATCH_SIGNATURE_INVALID: {
    title: 'A batch envelope signature does not verify (tampered, wrong key, or disallowed algorithm).',
    action: 'Reject the batch and report it to the sender; never process its items.',
  },
  BATCH_PAYLOAD_HASH_MISMATCH: {
    title: 'The items delivered with a signed batch do not match the hash in its envelope.',
    action:
      'Reject the batch: the items were altered or belong to another batch. Ask the sender to resend it.',
  },
  BATCH_COUNT_MISMATCH: {
    title: 'The number of items delivered with a batch differs from the count in its signed envelope.',
    action: 'Reject the batch: items were lost or added in transit. Ask the sender to resend it.',
  },

  // Tamper-evident audit trail (src/engine/audit)
  AUDIT_ENTRY_INVALID: {
    title:
      'An audit entry was refused: a field is missing, not a code or token, or a detail value is not allowed.',
    action:
      'Fix the caller: the message names each field. The subject must be a Sluice pseudonym and details short scalars; nothing was appended.',
  },
  AUDIT_SIGNER_MISSING: {
    title: 'The audit log was opened without a checkpoint signing key, so it cannot append or seal entries.',
    action:
      'Configure the audit signing key (a private Ed25519 or P-256 JWK with a kid) and open the log again.',
  },
  AUDIT_CONCURRENT_APPEND: {
    title: 'Another writer appended to the same audit log at the same time; the batch was not written.',
    action:
      'Nothing is lost: the entries can be appended again safely (Sluice retries once under the trail lock on PostgreSQL). On SQLite, run a single writer per audit database.',
  },
  AUDIT_INTEGRITY: {
    title: 'Stored audit data does not match its hashes or signed checkpoints.',
    action:
      'Treat it as a security incident: run the audit verification to locate the first break, keep the database as evidence and restore from backup.',
  },
  AUDIT_PROOF_UNAVAILABLE: {
    title: 'The requested inclusion or consistency proof cannot be produced for these positions.',
    action:
      'Ask for positions between the retention cut and the current size; entries before the cut were pruned with their proofs.',
  },
  AUDIT_QUERY_INVALID: {
    title:
      'An audit search or retention request has an invalid parameter (time, kind, pseudonym or paging value).',
    action: 'Correct the parameter named in the message.',
  },
  AUDIT_PRUNE_REFUSED: {
    title: 'Retention pruning was refused because the part of the log to prune does not verify.',
    action:
      'Run the audit verification and investigate the reported break; pruning would destroy the evidence, so nothing was deleted.',
  },

  // Anonymization pipeline, token vault and release risk (src/core/anonymize)
  ANON_RULES_INVALID: {
    title:
      'An anonymization rule set failed validation (syntax, unknown method or parameter, or a path that names no FHIR element).',
    action:
      'Fix every listed key (rules[i].path, rules[i].params…) in the rule set file; paths are checked against the FHIR R4 model.',
  },
  ANON_CONTEXT_INVALID: {
    title:
      'The anonymization context lacks something the rule set or release check needs (pseudonym key, hash salt, token vault, ZIP3 list, threshold).',
    action:
      'Provide the item named in the message in the flow configuration (keys need at least 32 bytes, salts at least 16), then run again.',
  },
  ANON_UNKNOWN_ELEMENT: {
    title: 'A resource held an element the FHIR R4 model does not define; it was removed (fail closed).',
    action:
      'Nothing to do for this release; if the element is needed, ask the source to send it as a proper extension and add a rule for it.',
  },
  ANON_METHOD_UNSUPPORTED: {
    title: 'A rule applied a method to an element type it cannot transform; the element was removed instead.',
    action:
      'Narrow the rule path (the message names it and the element type) or choose a method that fits the type.',
  },
  ANON_NO_PERSON: {
    title:
      'A per-person method (date shift, perturbation) found no patient reference on the resource; the values were removed.',
    action:
      'Check that the resource references its patient (subject/patient), or add a rule that generalises or redacts the element.',
  },
  ANON_REFERENCE_UNRESOLVED: {
    title:
      'A reference could not be rewritten to a pseudonym or token (contained, identifier-only or unknown bundle reference); it was removed.',
    action:
      'Nothing to do if the link is not needed; otherwise send literal Type/id references from the source.',
  },
  ANON_RESOURCE_SUPPRESSED: {
    title:
      'A resource was withheld whole by the anonymization rule set (suppress rule or type not released).',
    action:
      'Expected when the rule set says so; change its resourceTypes or suppress rules to release the resource.',
  },
  ANON_RISK_EXCEEDED: {
    title:
      'A release was refused: its re-identification risk breaks a configured threshold (k-anonymity, l-diversity, risk).',
    action:
      'Generalise further (wider age bands, ZIP3 or state, fewer quasi-identifiers) or aggregate; the details list each failed threshold with its value.',
  },
  ANON_REIDENTIFY_DENIED: {
    title:
      'A re-identification request was refused (permission missing, invalid, expired, revoked, for another actor or namespace, or no reason given).',
    action:
      'Obtain a re-identification permission for this actor and namespace from the privacy officer and state a reason; the refusal is itself audited.',
  },
  ANON_TOKEN_UNKNOWN: {
    title: 'A token is not in the token vault (mistyped, from another vault, or the vault was rotated).',
    action: 'Check the token and that the vault file of the flow that issued it is the one opened.',
  },
  ANON_VAULT_FAILED: {
    title: 'The token vault could not be opened, read or written, or its secret does not match its contents.',
    action:
      'Check the vault path and permissions and that the configured vault secret is the one it was created with; tokens are never reissued silently.',
  },

  // Bulk Data export source (src/adapters/epic-fhir/bulk)
  SRC_EXPORT_INCOMPLETE: {
    title:
      'A Bulk Data export could not be read completely: a listed file was gone (404/410), kept failing or ended short, or the server reported export errors.',
    action:
      'Run again: the checkpoint did not move, so a new export starts from it. If it repeats, check how long the EHR keeps export files and the file named in the message.',
  },
  SRC_EXPORT_TIMEOUT: {
    title: 'A Bulk Data export did not complete within the configured maximum wait.',
    action:
      'Raise the bulk export max wait, or narrow the flow (fewer resource types, a recent checkpoint); the checkpoint did not move.',
  },
  SRC_EXPORT_FOREIGN_URL: {
    title:
      'A Bulk Data status or file URL points to another origin than the FHIR base; Sluice did not follow it (the access token would go there).',
    action:
      'If the EHR serves export files from a storage host you trust, add its origin to the bulk allowed origins; otherwise report it to the EHR administrators.',
  },

  // Compiled FHIR R4 schema validation (src/core/validate/compiled); issue codes inside REC_INVALID_FHIR
  VAL_NOT_A_RESOURCE: {
    title:
      'A record (or a contained / Bundle entry resource) is not a JSON object with a known R4 resourceType.',
    action:
      'Fix the producer so it sends FHIR R4 JSON resources; the path shows which nested resource is wrong.',
    quarantine: true,
  },
  VAL_UNKNOWN_ELEMENT: {
    title:
      'A resource has a property its R4 type does not define (misspelt, wrong choice type, or from another version).',
    action: 'Remove or rename the property at the path at the source; custom data belongs in an extension.',
    quarantine: true,
  },
  VAL_CARDINALITY: {
    title:
      'A required element is missing, repeats too often, or is an array where one value is expected (or vice versa).',
    action:
      'Supply the element named in the path, or fix its JSON shape at the source, then release the record.',
    quarantine: true,
  },
  VAL_TYPE: {
    title: 'A value has the wrong JSON type for its FHIR type (for example a number given as a string).',
    action:
      'Fix the value at the path at the source (FHIR JSON uses numbers for decimal/integer, booleans for boolean).',
    quarantine: true,
  },
  VAL_EMPTY: {
    title:
      'A value is empty (empty string, object or array, a null, or an element with only an id); FHIR forbids these.',
    action: 'Omit the element at the source instead of sending it empty, then release the record.',
    quarantine: true,
  },
  VAL_FORMAT: {
    title:
      'A primitive value is malformed (date, dateTime, instant, time, uri, code, integer range, base64, oid, uuid, narrative).',
    action:
      'Fix the value at the path at the source; the message names the FHIR type whose format it breaks.',
    quarantine: true,
  },
  VAL_ID: {
    title: 'A resource or element id breaks the FHIR id format ([A-Za-z0-9-.], 1 to 64 characters).',
    action:
      'Fix the id at the source. If a trusted source (such as Epic) legitimately sends longer ids, enable allowLongIds for that source.',
    quarantine: true,
  },
  VAL_CHOICE: {
    title:
      'A choice element (value[x], effective[x]…) is given with more than one type, or its extension belongs to another type.',
    action: 'Keep exactly one variant of the choice element at the source, then release the record.',
    quarantine: true,
  },
  VAL_CODE: {
    title: 'A code is not in the value set its element is bound to with required strength.',
    action:
      'Map the source code to the required value set (named in the message) before sending, then release the record.',
    quarantine: true,
  },
  VAL_INVARIANT: {
    title:
      'A resource breaks a FHIR invariant (the message gives its key, for example per-1 or ref-1, and its rule).',
    action:
      'Fix the resource so the named rule holds (see the R4 specification for the key), then release the record.',
    quarantine: true,
  },
  VAL_REFERENCE: {
    title: 'A literal reference names a resource type the element does not allow (reported as a warning).',
    action: 'Check the reference at the source; the record is still accepted.',
  },

  // Inspection commands
  QUARANTINE_NOT_FOUND: {
    title: "The quarantine entry named on the command line is not in this flow's state.",
    action: 'List the entries with `sluice quarantine list FLOW` and use one of their ids.',
  },
  QUARANTINE_SUPERSEDED: {
    title:
      'A newer version of the quarantined record has been processed since: releasing this one would send it over the newer.',
    action:
      'Leave the newer version standing: discard the entry (`sluice quarantine discard FLOW ID --reason superseded`).',
  },
  BATCH_NOT_FOUND: {
    title: "The batch named on the command line is not in this flow's state.",
    action: 'List the batches with `sluice batches list FLOW` and use one of their ids.',
  },

  // Mapping matrix and identity resolution (issue #3)
  MAP_UNKNOWN_CODE: {
    title: 'A source code has no entry in the concept map the mapping matrix names for that field.',
    action:
      'Add the code to the concept map in config/mappings (the message names the map and the path), or correct it at the source, then release the record.',
    quarantine: true,
  },
  MAP_CONFLICTING_VALUES: {
    title: 'A single-valued field received several different values from the source (for example two NPIs).',
    action: 'Resolve the duplicate at the source (the path names the field), then release the record.',
    quarantine: true,
  },
  MAP_INVALID_VALUE: {
    title: "A source value fails the field's validation rule or is not among its allowed values.",
    action: 'Correct the value at the source (the path names the field and rule), then release the record.',
    quarantine: true,
  },
  MAP_MISSING_EXTERNAL_ID: {
    title: 'A CRM record has no external id, so it cannot be tied to its source; nothing is guessed.',
    action: 'Set the external id on the CRM record (the path names the field), then release the record.',
    quarantine: true,
  },
  MAP_CANONICAL_INVALID: {
    title: 'A mapping produced a canonical record that fails the canonical schema.',
    action:
      'Fix the mapping matrix rule for the named path (config/mappings) and re-run `sluice mapping docs`; then release the record.',
    quarantine: true,
  },
  MAP_NO_MATRIX_ENTRY: {
    title: 'The mapping matrix has no entry for this record type in this direction.',
    action:
      'Add a mapping for the type to config/mappings or remove it from the flow, then release the record.',
    quarantine: true,
  },
  MATRIX_INVALID: {
    title:
      'A mapping matrix file fails its schema or a governance rule (every error is listed with its key).',
    action:
      'Fix each listed key in the file under config/mappings (fields that drive consent, eligibility or PHI need an owner and a validation rule).',
  },
  MATRIX_DOCS_STALE: {
    title: 'docs/mapping-matrix.md does not match the mapping matrix files.',
    action: 'Run `sluice mapping docs` and commit docs/mapping-matrix.md.',
  },
  IDENTITY_CONFIG_INVALID: {
    title: 'The identity resolution configuration is invalid (unknown rule, thresholds out of order).',
    action:
      'Fix the named key: precedence rules must be known and review threshold below the match threshold.',
  },
  IDENTITY_REVIEW_REQUIRED: {
    title: 'A probable identity match scored inside the review band; it is held for an operator, not merged.',
    action: 'Review the candidate pair and its weights, then merge or reject it explicitly.',
    quarantine: true,
  },

  // Anonymization profiles and the `sluice anonymize` / `sluice risk` commands (src/core/anonymize, src/cli)
  ANON_PROFILE_NOT_FOUND: {
    title: 'The anonymization profile named is neither a shipped profile nor a readable file.',
    action:
      'Give safe-harbor, crm-follow-up or analytics, or the path of a profile file (YAML or JSON; see config/anonymize).',
  },
  ANON_INPUT_INVALID: {
    title:
      'An input to `sluice anonymize` is not FHIR JSON, a Bundle or NDJSON (or could not be read or decompressed).',
    action:
      'Check the file and line named in the message; inputs are FHIR JSON resources, Bundles, NDJSON and their .gz forms, or - for stdin.',
  },

  // Recipient policy (allowlists)
  POLICY_ALLOWLIST_INVALID: {
    title: 'A recipient allowlist file fails its schema, or does not match the flow it is used by.',
    action: 'Fix every listed key; the allowlist must name the flow’s recipient and purpose.',
  },
  POLICY_OBJECT_NOT_ALLOWED: {
    title: 'A record would write a target object the recipient’s allowlist does not allow.',
    action:
      'If the recipient may have it, add the object and its fields to the allowlist (a new version); else fix the mapping.',
    quarantine: true,
  },
  POLICY_FORBIDDEN_COMBINATION: {
    title: 'A record would send a combination of fields the allowlist forbids together.',
    action:
      'Check the mapping that produced both fields; the record is held until the data or the mapping changes.',
    quarantine: true,
  },

  // Anonymization: Microsoft FHIR Tools for Anonymization configs (src/core/anonymize/ms-compat)
  ANON_MS_CONFIG_INVALID: {
    title: 'A Microsoft FHIR Tools for Anonymization config (fhirPathRules) is invalid.',
    action:
      'Fix every listed problem in the config (rule path, method, per-method settings, parameters such as encryptKey length) and run again; nothing was processed.',
  },
  ANON_MS_PROCESSING_FAILED: {
    title: 'A rule of a Microsoft-format anonymization config failed on a record (processingErrors: raise).',
    action:
      'Check the named rule and element path against the record type; set processingErrors to skip to release such records as empty resources instead.',
    quarantine: true,
  },
  ANON_MS_RULE_NOT_APPLICABLE: {
    title:
      'A rule of a Microsoft-format anonymization config applies a method to an element type it cannot handle.',
    action:
      'Narrow the rule path so the method only meets the types it supports (generalize: primitive elements only) and run again.',
  },

  // Sandboxes
  SANDBOX_SEED_INVALID: {
    title: 'A seed file for a sandbox could not be loaded.',
    action:
      'The message names the file and line; seed folders take FHIR JSON, Bundles, NDJSON and their .gz forms.',
  },
  SANDBOX_LISTEN_FAILED: {
    title: 'A sandbox could not listen on the requested port.',
    action: 'Choose another --port, or 0 for a free one.',
  },

  // Generic
  INTERNAL: {
    title: 'An unexpected internal error.',
    action: 'Report it with the message; no record content is included in it.',
  },
  ABORTED: {
    title: 'The operation was cancelled.',
    action: 'Run again; work that completed before the cancel is checkpointed and will not repeat.',
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CATALOG;

export function isErrorCode(value: string): value is ErrorCode {
  return Object.hasOwn(ERROR_CATALOG, value);
}

export function errorSpec(code: ErrorCode): ErrorSpec {
  return ERROR_CATALOG[code];
}
