/**
 * Numbered schema migrations of the embedded store. Append only: a released migration is never
 * edited; a change is a new step. `schema_version` records the highest applied step.
 */
export const SQLITE_MIGRATIONS: readonly string[] = [
  // 1: checkpoints, delivery ledger, quarantine, runs
  `
  CREATE TABLE checkpoints (
    flow TEXT NOT NULL,
    stream TEXT NOT NULL,
    position TEXT NOT NULL,
    definition_hash TEXT NOT NULL,
    run_id TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (flow, stream)
  ) STRICT;
  CREATE TABLE ledger (
    flow TEXT NOT NULL,
    object TEXT NOT NULL,
    external_id TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    target_id TEXT NOT NULL,
    source_ref TEXT NOT NULL,
    mapping_version TEXT NOT NULL,
    run_id TEXT NOT NULL,
    delivered_at TEXT NOT NULL,
    PRIMARY KEY (flow, object, external_id)
  ) STRICT;
  CREATE INDEX ledger_source ON ledger (flow, source_ref);
  CREATE TABLE quarantine (
    id TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    run_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    stage TEXT NOT NULL,
    code TEXT NOT NULL,
    issues TEXT NOT NULL,
    origin TEXT NOT NULL,
    source_ref TEXT,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open'
  ) STRICT;
  CREATE INDEX quarantine_flow ON quarantine (flow, status, created_at);
  CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    summary TEXT
  ) STRICT;
  CREATE INDEX runs_flow ON runs (flow, started_at);
  `,
  // 2: source versions already processed (overlap de-duplication), the change log for replay, and the
  //    environment a checkpoint belongs to
  `
  CREATE TABLE source_versions (
    flow TEXT NOT NULL,
    stream TEXT NOT NULL,
    ref TEXT NOT NULL,
    version_key TEXT NOT NULL,
    outcome TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (flow, stream, ref)
  ) STRICT;
  CREATE TABLE change_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    flow TEXT NOT NULL,
    stream TEXT NOT NULL,
    ref TEXT NOT NULL,
    version_key TEXT NOT NULL,
    last_updated TEXT,
    payload TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    UNIQUE (flow, stream, ref, version_key)
  ) STRICT;
  CREATE INDEX change_log_time ON change_log (flow, stream, last_updated);
  CREATE INDEX change_log_recorded ON change_log (flow, recorded_at);
  ALTER TABLE checkpoints ADD COLUMN environment TEXT NOT NULL DEFAULT '';
  `,
  // 3: consent directives the flow has read (subject is a pseudonym), for send-time checks across runs
  `
  CREATE TABLE consent_states (
    flow TEXT NOT NULL,
    consent_key TEXT NOT NULL,
    subject TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (flow, consent_key)
  ) STRICT;
  CREATE INDEX consent_subject ON consent_states (flow, subject);
  `,
  // 4: batch manifests: what was sent, when, why, under which policy (sluice batches show)
  `
  CREATE TABLE batches (
    batch_id TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    run_id TEXT NOT NULL,
    object TEXT NOT NULL,
    created_at TEXT NOT NULL,
    purpose TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    record_count INTEGER NOT NULL,
    envelope TEXT NOT NULL,
    jws TEXT,
    results TEXT NOT NULL
  ) STRICT;
  CREATE INDEX batches_flow ON batches (flow, created_at);
  `,
  // 5: FHIR Provenance of every delivered record (entity by `Type/id` or pseudonym)
  `
  CREATE TABLE provenance (
    flow TEXT NOT NULL,
    entity TEXT NOT NULL,
    run_id TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    resource TEXT NOT NULL
  ) STRICT;
  CREATE INDEX provenance_entity ON provenance (flow, entity, recorded_at);
  `,
  // 6: the consent-aware key a batch was grouped under
  `
  ALTER TABLE batches ADD COLUMN batch_key TEXT;
  `,
  // 7: the policy versions a quarantined record was judged under (allowlist, consent policy, mapping)
  `
  ALTER TABLE quarantine ADD COLUMN policy_version TEXT;
  `,
  // 8: the person (pseudonym) a processed source version belongs to, for policy events
  `
  ALTER TABLE source_versions ADD COLUMN subject TEXT;
  CREATE INDEX source_versions_subject ON source_versions (flow, stream, subject);
  `,
  // 9: provenance as facts (compact JSON), built into FHIR Provenance when read; rows of table
  //    `provenance` (whole resources, written before) stay readable
  `
  CREATE TABLE provenance_facts (
    flow TEXT NOT NULL,
    entity TEXT NOT NULL,
    run_id TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    facts TEXT NOT NULL
  ) STRICT;
  CREATE INDEX provenance_facts_entity ON provenance_facts (flow, entity, recorded_at);
  `,
  // 10: change-log times as UTC text with milliseconds (as the source wrote them before), so that
  //     replay windows compare times, not text: `…T10:00:00+05:00` is earlier than `…T06:00:00Z`.
  //     SQLite's strftime reads the zone; a value it cannot read becomes NULL, which every replay
  //     window includes (as new entries without a readable time).
  `
  UPDATE change_log SET last_updated = strftime('%Y-%m-%dT%H:%M:%fZ', last_updated)
  WHERE last_updated IS NOT NULL;
  `,
  // 11: a closed quarantine entry (released or discarded) keeps no copy of the record: when it was
  //     closed and the record's SHA-256 (computed when quarantined) say which record it was. Entries
  //     closed before this lose their copy now; their digest is unknown.
  `
  ALTER TABLE quarantine ADD COLUMN closed_at TEXT;
  ALTER TABLE quarantine ADD COLUMN payload_sha256 TEXT;
  UPDATE quarantine SET payload = '' WHERE status <> 'open';
  `,
  // 12: the open quarantine entries of a source record, found when a page supersedes them
  `
  CREATE INDEX quarantine_open_ref ON quarantine (flow, stream, source_ref) WHERE status = 'open';
  `,
  // 13: a flow's kill switch: while a row exists, nothing of the flow is sent (`sluice halt`/`resume`)
  `
  CREATE TABLE halts (
    flow TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    engaged_at TEXT NOT NULL
  ) STRICT;
  `,
  // 14: removals the target refused (a locked record): kept, retried, shown, until done or re-sent
  `
  CREATE TABLE refused_removals (
    flow TEXT NOT NULL,
    object TEXT NOT NULL,
    external_id TEXT NOT NULL,
    target_id TEXT NOT NULL,
    source_ref TEXT NOT NULL,
    cause TEXT NOT NULL,
    because TEXT,
    codes TEXT NOT NULL,
    run_id TEXT NOT NULL,
    first_refused_at TEXT NOT NULL,
    last_attempt_at TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at TEXT NOT NULL,
    PRIMARY KEY (flow, object, external_id)
  ) STRICT;
  `,
  // 15: a checkpoint keeps the source's own place beside its time (an event bus: the stream sequence)
  `
  ALTER TABLE checkpoints ADD COLUMN cursor TEXT;
  `,
];
