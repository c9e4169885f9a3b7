/**
 * Numbered schema migrations of the PostgreSQL state store (cluster mode). Append only: a released
 * migration is never edited; a change is a new step. `schema_version` records the highest applied step.
 *
 * Step 1 is the end state of the embedded store's migrations (`migrations.ts`, steps 1–14): the same
 * tables, columns and indexes, so that both engines answer alike. Differences, all for that purpose:
 * - Text is `COLLATE "C"` (byte order, as SQLite's BINARY): keyset pages of the ledger, ISO times and
 *   every ORDER BY compare the same way whatever the database's default collation is.
 * - Times stay ISO text (as in SQLite), compared and ordered as text.
 * - Tables ordered by insertion in SQLite (by its hidden `rowid`) have an explicit `seq`.
 * - JSON values (issues, results, codes, facts, envelopes, consent states) stay text: they read back
 *   exactly as written.
 */
export const PG_MIGRATIONS: readonly string[] = [
  // 1: the embedded store's schema at its step 14
  `
  CREATE TABLE checkpoints (
    flow TEXT COLLATE "C" NOT NULL,
    stream TEXT COLLATE "C" NOT NULL,
    position TEXT COLLATE "C" NOT NULL,
    definition_hash TEXT COLLATE "C" NOT NULL,
    run_id TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL,
    environment TEXT COLLATE "C" NOT NULL DEFAULT '',
    PRIMARY KEY (flow, stream)
  );
  CREATE TABLE ledger (
    flow TEXT COLLATE "C" NOT NULL,
    object TEXT COLLATE "C" NOT NULL,
    external_id TEXT COLLATE "C" NOT NULL,
    payload_hash TEXT COLLATE "C" NOT NULL,
    target_id TEXT COLLATE "C" NOT NULL,
    source_ref TEXT COLLATE "C" NOT NULL,
    mapping_version TEXT COLLATE "C" NOT NULL,
    run_id TEXT COLLATE "C" NOT NULL,
    delivered_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (flow, object, external_id)
  );
  CREATE INDEX ledger_source ON ledger (flow, source_ref);
  CREATE TABLE quarantine (
    id TEXT COLLATE "C" PRIMARY KEY,
    seq BIGSERIAL NOT NULL,
    flow TEXT COLLATE "C" NOT NULL,
    run_id TEXT COLLATE "C" NOT NULL,
    stream TEXT COLLATE "C" NOT NULL,
    stage TEXT COLLATE "C" NOT NULL,
    code TEXT COLLATE "C" NOT NULL,
    issues TEXT NOT NULL,
    origin TEXT COLLATE "C" NOT NULL,
    source_ref TEXT COLLATE "C",
    payload TEXT NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL DEFAULT 'open',
    policy_version TEXT COLLATE "C",
    closed_at TEXT COLLATE "C",
    payload_sha256 TEXT COLLATE "C"
  );
  CREATE INDEX quarantine_flow ON quarantine (flow, status, created_at);
  CREATE INDEX quarantine_open_ref ON quarantine (flow, stream, source_ref) WHERE status = 'open';
  CREATE TABLE runs (
    run_id TEXT COLLATE "C" PRIMARY KEY,
    seq BIGSERIAL NOT NULL,
    flow TEXT COLLATE "C" NOT NULL,
    started_at TEXT COLLATE "C" NOT NULL,
    finished_at TEXT COLLATE "C",
    status TEXT COLLATE "C" NOT NULL,
    summary TEXT
  );
  CREATE INDEX runs_flow ON runs (flow, started_at);
  CREATE TABLE source_versions (
    flow TEXT COLLATE "C" NOT NULL,
    stream TEXT COLLATE "C" NOT NULL,
    ref TEXT COLLATE "C" NOT NULL,
    version_key TEXT COLLATE "C" NOT NULL,
    outcome TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL,
    subject TEXT COLLATE "C",
    PRIMARY KEY (flow, stream, ref)
  );
  CREATE INDEX source_versions_subject ON source_versions (flow, stream, subject);
  CREATE TABLE change_log (
    seq BIGSERIAL PRIMARY KEY,
    flow TEXT COLLATE "C" NOT NULL,
    stream TEXT COLLATE "C" NOT NULL,
    ref TEXT COLLATE "C" NOT NULL,
    version_key TEXT COLLATE "C" NOT NULL,
    last_updated TEXT COLLATE "C",
    payload TEXT NOT NULL,
    recorded_at TEXT COLLATE "C" NOT NULL,
    UNIQUE (flow, stream, ref, version_key)
  );
  CREATE INDEX change_log_time ON change_log (flow, stream, last_updated);
  CREATE INDEX change_log_recorded ON change_log (flow, recorded_at);
  CREATE TABLE consent_states (
    flow TEXT COLLATE "C" NOT NULL,
    consent_key TEXT COLLATE "C" NOT NULL,
    subject TEXT COLLATE "C" NOT NULL,
    state TEXT NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (flow, consent_key)
  );
  CREATE INDEX consent_subject ON consent_states (flow, subject);
  CREATE TABLE batches (
    batch_id TEXT COLLATE "C" PRIMARY KEY,
    seq BIGSERIAL NOT NULL,
    flow TEXT COLLATE "C" NOT NULL,
    run_id TEXT COLLATE "C" NOT NULL,
    object TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    purpose TEXT COLLATE "C" NOT NULL,
    policy_version TEXT COLLATE "C" NOT NULL,
    record_count BIGINT NOT NULL,
    envelope TEXT NOT NULL,
    jws TEXT,
    results TEXT NOT NULL,
    batch_key TEXT COLLATE "C"
  );
  CREATE INDEX batches_flow ON batches (flow, created_at);
  CREATE TABLE provenance (
    seq BIGSERIAL PRIMARY KEY,
    flow TEXT COLLATE "C" NOT NULL,
    entity TEXT COLLATE "C" NOT NULL,
    run_id TEXT COLLATE "C" NOT NULL,
    recorded_at TEXT COLLATE "C" NOT NULL,
    resource TEXT NOT NULL
  );
  CREATE INDEX provenance_entity ON provenance (flow, entity, recorded_at);
  CREATE TABLE provenance_facts (
    seq BIGSERIAL PRIMARY KEY,
    flow TEXT COLLATE "C" NOT NULL,
    entity TEXT COLLATE "C" NOT NULL,
    run_id TEXT COLLATE "C" NOT NULL,
    recorded_at TEXT COLLATE "C" NOT NULL,
    facts TEXT NOT NULL
  );
  CREATE INDEX provenance_facts_entity ON provenance_facts (flow, entity, recorded_at);
  CREATE TABLE halts (
    flow TEXT COLLATE "C" PRIMARY KEY,
    reason TEXT COLLATE "C" NOT NULL,
    engaged_at TEXT COLLATE "C" NOT NULL
  );
  CREATE TABLE refused_removals (
    flow TEXT COLLATE "C" NOT NULL,
    object TEXT COLLATE "C" NOT NULL,
    external_id TEXT COLLATE "C" NOT NULL,
    target_id TEXT COLLATE "C" NOT NULL,
    source_ref TEXT COLLATE "C" NOT NULL,
    cause TEXT COLLATE "C" NOT NULL,
    because TEXT COLLATE "C",
    codes TEXT NOT NULL,
    run_id TEXT COLLATE "C" NOT NULL,
    first_refused_at TEXT COLLATE "C" NOT NULL,
    last_attempt_at TEXT COLLATE "C" NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (flow, object, external_id)
  );
  `,
  // 2: the embedded store's step 15 (a checkpoint's cursor)
  `
  ALTER TABLE checkpoints ADD COLUMN cursor TEXT COLLATE "C";
  `,
  // 3: a change sequence on consent states, so a local mirror of a flow's consents (the consent gate's
  //    synchronous lookup, `consent-replica.ts`) reads only what changed since it last did
  `
  CREATE SEQUENCE consent_change_seq;
  ALTER TABLE consent_states ADD COLUMN change_seq BIGINT NOT NULL DEFAULT nextval('consent_change_seq');
  CREATE INDEX consent_changes ON consent_states (flow, change_seq);
  `,
  // 4: record copies are sealed (cluster mode requires state.encryption), so the server's attempt to
  //    compress each one before storing it out of line is wasted work: stored out of line as they are
  `
  ALTER TABLE change_log ALTER COLUMN payload SET STORAGE EXTERNAL;
  ALTER TABLE quarantine ALTER COLUMN payload SET STORAGE EXTERNAL;
  `,
];
