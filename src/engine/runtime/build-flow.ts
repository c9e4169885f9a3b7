import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { BulkExportClient } from '../../adapters/epic-fhir/bulk/bulk-client.ts';
import { BulkExportSource } from '../../adapters/epic-fhir/bulk/bulk-source.ts';
import { FhirClient } from '../../adapters/epic-fhir/fhir-client.ts';
import { FhirSearchSource } from '../../adapters/epic-fhir/fhir-source.ts';
import { BackendServicesAuth } from '../../adapters/epic-fhir/smart-auth.ts';
import { createRetryPolicy } from '../../adapters/http/retry-policy.ts';
import { EventBus } from '../../adapters/nats-bus/event-bus.ts';
import { CrmAuth } from '../../adapters/veeva-crm/crm-auth.ts';
import { VeevaTarget } from '../../adapters/veeva-crm/veeva-target.ts';
import { SluiceError } from '../../core/errors/index.ts';
import type { SystemName } from '../../core/model/ids.ts';
import { compileWithholdPolicy } from '../../core/policy/withhold.ts';
import type { Source } from '../../core/ports/source.ts';
import type { Target } from '../../core/ports/target.ts';
import { SqliteBreakerStateStore } from '../../delivery/flow-control/breaker.ts';
import { createDeliveryGate, type DeliveryGate } from '../../delivery/flow-control/gate.ts';
import { DEFAULT_THROTTLE_POLICY } from '../../delivery/flow-control/policy.ts';
import { openSharedRate, type SharedRate, sharedRateKey } from '../../delivery/flow-control/shared-rate.ts';
import { createCheckpointSigner } from '../audit/checkpoint.ts';
import { AuditLog } from '../audit/index.ts';
import { PostgresAuditStore } from '../audit/pg-audit-store.ts';
import { BusSource } from '../bus/bus-source.ts';
import type { ResolvedFlow } from '../config/load-flow.ts';
import { CONSENT_STREAM, ConsentGate } from '../consent/consent-gate.ts';
import type { BatchSealing } from '../pipeline/deliver.ts';
import type { RecordStageContext } from '../pipeline/record-stages.ts';
import type { RunFlowOptions } from '../pipeline/run-flow.ts';
import { type LeaseAttempt, tryFlowLease } from '../store/pg-lease.ts';
import { PostgresStateStore } from '../store/pg-store.ts';
import { SqliteStateStore } from '../store/sqlite-store.ts';
import type { StateStore } from '../store/state-store.ts';

/** Everything a run of one flow needs, built from its resolved definition. */
export interface FlowRuntime {
  readonly source: Source;
  readonly target: Target;
  readonly store: StateStore;
  readonly stages: Omit<RecordStageContext, 'asOf'>;
  readonly maxBatch: number;
  readonly consent?: ConsentGate;
  /** Flow control of the target endpoint (stats for progress and metrics). */
  readonly gate: DeliveryGate;
  /** The flow's tamper-evident audit log. */
  readonly audit: AuditLog;
  /** Send-time consent refreshes always search (a bulk export per send would be absurd). */
  readonly consentSource: Source;
  /** Every upsert request is a batch with a manifest; signed when the flow has a signing key. */
  readonly sealing: Omit<BatchSealing, 'checkedAt'>;
  /** The run options the flow file sets (overlap, skew, retention, deletes, environment). */
  readonly runOptions: {
    readonly environment: string;
    readonly overlapSeconds: number;
    readonly clockSkewSeconds: number;
    readonly changeLogDays: number;
    readonly deletes: 'delete' | 'ignore';
    readonly onItemFailure: 'quarantine-item' | 'reject-batch';
    readonly onRevoke: 'delete' | 'ignore';
  };
  /**
   * Cluster mode (`state.postgres`): tries to take the flow's lease, which a process must hold while it
   * runs the flow (see `withFlowLease`), or another of its leases by name (`flow@ingest`). Absent for the embedded store (one machine, one state file).
   */
  readonly lease?: (name?: string) => Promise<LeaseAttempt>;
  /**
   * With an event bus (`bus.nats`): the bus, and the EHR source `sluice ingest` reads into it (`source`
   * above then reads the bus).
   */
  readonly bus?: { readonly events: EventBus; readonly ehr: Source };
  close(): Promise<void>;
}

/** The read-only scopes a flow needs: `system/<Type>.rs` for each resource type it reads. */
export function defaultScope(resourceTypes: readonly string[]): string {
  return resourceTypes.map((t) => `system/${t}.rs`).join(' ');
}

/** The audit database of a flow: `<state.dir>/<flow>.audit.sqlite`. */
export function auditDbPath(flow: ResolvedFlow): string {
  return join(flow.stateDir, `${flow.file.flow}.audit.sqlite`);
}

/** Opens the flow's audit log: writable with the signing key, verifiable with the configured keys. */
export async function openFlowAudit(
  flow: ResolvedFlow,
  options: { readOnly?: boolean } = {},
): Promise<AuditLog> {
  mkdirSync(flow.stateDir, { recursive: true, mode: 0o700 });
  const signer =
    options.readOnly || flow.auditSigningKey === undefined
      ? undefined
      : await createCheckpointSigner(flow.auditSigningKey);
  const postgres = flow.file.state.postgres;
  const store = postgres
    ? await PostgresAuditStore.open({ url: postgres.url, schema: postgres.schema, log: flow.file.flow })
    : auditDbPath(flow);
  return AuditLog.open({
    store,
    ...(typeof store === 'string' ? {} : { ownsStore: true }),
    ...(signer ? { signer } : {}),
    ...(flow.auditVerifyKeys ? { jwks: { keys: [...flow.auditVerifyKeys.keys] } } : {}),
    checkpointEvery: flow.file.audit.checkpointEvery,
    ...(options.readOnly || typeof store !== 'string'
      ? {}
      : { backgroundCheckpoints: true, appendThread: true }),
  });
}

/** The state database of a flow: `<state.dir>/<flow>.sqlite`. */
export function stateDbPath(flow: ResolvedFlow): string {
  return join(flow.stateDir, `${flow.file.flow}.sqlite`);
}

/**
 * Opens the flow's state store — its SQLite file, or PostgreSQL in cluster mode (`state.postgres`) —
 * sealing and opening record copies under its `state.encryption` key. The SQLite options (background
 * checkpoints, a commit thread) do not apply to PostgreSQL.
 */
export async function openFlowState(
  flow: ResolvedFlow,
  options: { backgroundCheckpoints?: boolean; commitThread?: boolean } = {},
): Promise<StateStore> {
  const key = flow.payloadKey ? { payloadKey: flow.payloadKey } : {};
  const postgres = flow.file.state.postgres;
  if (postgres) {
    return PostgresStateStore.open({
      url: postgres.url,
      schema: postgres.schema,
      poolSize: postgres.poolSize,
      ...key,
    });
  }
  return SqliteStateStore.open(stateDbPath(flow), { ...options, ...key });
}

/** Composition root: adapters, store and stage context for a resolved flow. */
export async function buildFlowRuntime(
  flow: ResolvedFlow,
  options: { store?: StateStore } = {},
): Promise<FlowRuntime> {
  if (flow.offline) {
    // Loaded with placeholders for unset connection settings: nothing may connect with it.
    throw new SluiceError(
      'CFG_FLOW_INVALID',
      `Flow ${flow.file.flow} was loaded without its connection settings; this command needs them.`,
    );
  }
  const { source: src, target: tgt, stages } = flow.file;

  // Consent directives are read first, so every patient record meets the current consent.
  const streams = stages.consent ? [CONSENT_STREAM, ...src.resources] : [...src.resources];
  const sourceAuth =
    src.auth.kind === 'smart-backend-services' && flow.sourcePrivateKey
      ? new BackendServicesAuth({
          baseUrl: src.baseUrl,
          clientId: src.auth.clientId,
          privateKey: flow.sourcePrivateKey,
          scope: src.auth.scope ?? defaultScope(streams),
          ...(src.auth.tokenUrl === undefined ? {} : { tokenUrl: src.auth.tokenUrl }),
        })
      : undefined;
  const client = new FhirClient({
    baseUrl: src.baseUrl,
    ...(sourceAuth ? { auth: sourceAuth } : {}),
    retry: createRetryPolicy(),
    timeoutMs: src.timeoutSeconds * 1000,
  });
  const search = new FhirSearchSource({
    system: src.system as SystemName,
    client,
    resourceTypes: streams,
    pageSize: src.pageSize,
    serverTimeCheckpoints: src.serverTimeCheckpoints,
  });
  const ehr: Source =
    src.mode === 'bulk'
      ? new BulkExportSource({
          system: src.system as SystemName,
          client: new BulkExportClient({
            baseUrl: src.baseUrl,
            ...(sourceAuth ? { auth: sourceAuth } : {}),
            retry: createRetryPolicy(),
            timeoutMs: src.timeoutSeconds * 1000,
            maxWaitMs: src.bulk.maxWaitMinutes * 60_000,
          }),
          resourceTypes: streams,
          pageSize: src.pageSize,
          level:
            src.bulk.level === 'group'
              ? { kind: 'group', groupId: src.bulk.groupId as string }
              : { kind: src.bulk.level },
          exportErrors: src.bulk.exportErrors,
          exportsAhead: src.bulk.exportsAhead,
        })
      : search;

  // With a bus, the pipeline reads the change events `sluice ingest` published from the EHR; records
  // read by id (consent changes, repair) still come from the EHR.
  const busConfig = flow.file.bus?.nats;
  let events: EventBus | undefined;
  if (busConfig) {
    if (flow.payloadKey === undefined) {
      throw new SluiceError(
        'CFG_FLOW_INVALID',
        'An event bus needs state.encryption: its events are sealed under it.',
      );
    }
    events = await EventBus.open({
      url: busConfig.url,
      flow: flow.file.flow,
      ...(busConfig.stream === undefined ? {} : { stream: busConfig.stream }),
      maxAgeDays: busConfig.maxAgeDays,
      replicas: busConfig.replicas,
    });
  }
  const source: Source = events
    ? new BusSource({
        system: src.system as SystemName,
        streams,
        bus: events,
        key: flow.payloadKey as NonNullable<typeof flow.payloadKey>,
        pageSize: src.pageSize,
        fetcher: search,
      })
    : ehr;

  // One gate per target endpoint; its breaker state lives beside the flow state, so a restart
  // does not hammer a target that was failing.
  // A rate kept with every other process sending to the same org (`throttle.shared`), in Redis.
  const sharedPolicy = tgt.throttle?.shared;
  let shared: SharedRate | undefined;
  try {
    shared = sharedPolicy
      ? await openSharedRate({
          url: sharedPolicy.redis,
          key: sharedRateKey(sharedPolicy.key, tgt.baseUrl),
          rate: sharedPolicy.rate,
          burst: sharedPolicy.burst,
        })
      : undefined;
  } catch (err) {
    await events?.close();
    throw err;
  }
  const breakerStore = SqliteBreakerStateStore.open(join(flow.stateDir, `${flow.file.flow}.breaker.sqlite`));
  const gate = createDeliveryGate(tgt.throttle ?? DEFAULT_THROTTLE_POLICY, {
    endpoint: `${tgt.system}-api`,
    breakerStore,
    ...(shared ? { shared } : {}),
  });
  const target = new VeevaTarget({
    system: tgt.system,
    gate,
    priority: tgt.priority,
    auth: new CrmAuth({
      loginUrl: tgt.baseUrl,
      clientId: tgt.auth.clientId,
      clientSecret: tgt.auth.clientSecret,
    }),
    apiVersion: tgt.apiVersion,
    retry: createRetryPolicy(),
    timeoutMs: tgt.timeoutSeconds * 1000,
  });

  let store: StateStore | undefined;
  let audit: AuditLog;
  try {
    store = options.store ?? (await openFlowState(flow, { backgroundCheckpoints: true, commitThread: true }));
    audit = await openFlowAudit(flow);
  } catch (err) {
    gate.close();
    breakerStore.close();
    if (options.store === undefined) await store?.close();
    await events?.close();
    await shared?.close();
    throw err;
  }
  const state = store;
  const postgres = flow.file.state.postgres;
  return {
    ...(postgres
      ? {
          lease: async (name = flow.file.flow) =>
            fencing(state, await tryFlowLease({ url: postgres.url, schema: postgres.schema, flow: name })),
        }
      : {}),
    source,
    target,
    store: state,
    ...(events ? { bus: { events, ehr } } : {}),
    maxBatch: stages.batch.maxRecords,
    consentSource: search,
    sealing: {
      sourceSystem: src.system,
      targetSystem: tgt.system,
      purpose: flow.file.purpose,
      policyVersion: stages.consent?.policyVersion ?? 'no-consent-stage',
      ...(flow.batchSigningKey
        ? {
            signingKey: { kid: String(flow.batchSigningKey.kid), privateKey: flow.batchSigningKey },
            alg: flow.batchSigningKey.alg === 'EdDSA' ? ('EdDSA' as const) : ('ES256' as const),
          }
        : {}),
    },
    runOptions: {
      environment: createHash('sha256').update(`${src.baseUrl}\n${tgt.baseUrl}`).digest('hex').slice(0, 16),
      overlapSeconds: src.overlapSeconds,
      clockSkewSeconds: src.clockSkewSeconds,
      changeLogDays: flow.file.state.changeLogDays,
      deletes: stages.deletes,
      onItemFailure: stages.batch.onItemFailure,
      onRevoke: stages.consent?.onRevoke ?? 'delete',
    },
    ...(stages.consent
      ? {
          consent: new ConsentGate(
            {
              purpose: flow.file.purpose,
              recipient: stages.consent.recipient,
              policyVersion: stages.consent.policyVersion,
              defaultDecision: stages.consent.defaultDecision,
              refreshMs: stages.consent.refreshSeconds * 1000,
              clockSkewMs: src.clockSkewSeconds * 1000,
            },
            src.system,
            flow.pseudonymKey,
            { cacheSize: stages.consent.cacheSize },
          ),
        }
      : {}),
    stages: {
      system: src.system as SystemName,
      validateFhir: stages.validate.fhir,
      allowLongIds: src.deviations.longIds,
      refuseSecurityLabels: new Set(stages.provenance.refuseSecurityLabels),
      refuseConsentBasis: new Set(stages.provenance.refuseConsentBasis),
      retractSensitive: stages.provenance.delivered === 'delete',
      ...(flow.allowlist ? { allowlist: flow.allowlist } : {}),
      withhold: compileWithholdPolicy(stages.withhold),
      pseudonymKey: flow.pseudonymKey,
      restrictedZip3: flow.restrictedZip3,
      veeva: {
        recordTypes: tgt.recordTypes,
        patientProfileObject: tgt.patientProfileObject,
        ...(tgt.lineageField === null ? {} : { lineageField: tgt.lineageField }),
      },
    },
    audit,
    gate,
    close: async () => {
      gate.close();
      breakerStore.close();
      await audit.close();
      await state.close();
      await events?.close();
      await shared?.close();
    },
  };
}

/** The `runFlow` options a flow file and its runtime determine (callers add logger, progress, signal). */
export function flowRunOptions(flow: ResolvedFlow, runtime: FlowRuntime): Omit<RunFlowOptions, 'logger'> {
  return {
    flow: flow.file.flow,
    definitionHash: flow.definitionHash,
    source: runtime.source,
    target: runtime.target,
    store: runtime.store,
    stages: runtime.stages,
    maxBatch: runtime.maxBatch,
    ...runtime.runOptions,
    ...(runtime.consent ? { consent: runtime.consent, consentSource: runtime.consentSource } : {}),
    sealing: runtime.sealing,
    audit: runtime.audit,
    ...(flow.file.audit.retentionDays ? { auditRetentionDays: flow.file.audit.retentionDays } : {}),
    purpose: flow.file.purpose,
    ...(flow.file.stages.withoutConsent
      ? { withoutConsentBasis: flow.file.stages.withoutConsent.basis }
      : {}),
    ...(flow.file.stages.risk
      ? { risk: { object: flow.file.target.patientProfileObject, ...flow.file.stages.risk } }
      : {}),
    readBy:
      flow.file.source.auth.kind === 'smart-backend-services' ? flow.file.source.auth.clientId : 'anonymous',
    flowControlStats: () => {
      const { queueDepthByClass: _byClass, ...stats } = runtime.gate.stats();
      return stats;
    },
  };
}

/**
 * A lease taken fences the state store's page commits of its flow (see `StateStore.fence`) until it
 * is released: a holder that lost it commits nothing over its successor's work.
 */
function fencing(store: StateStore, attempt: LeaseAttempt): LeaseAttempt {
  if (!attempt.acquired) return attempt;
  const { lease } = attempt;
  store.fence?.(lease.flow, lease.fence);
  return {
    acquired: true,
    lease: {
      ...lease,
      release: async () => {
        store.fence?.(lease.flow, undefined);
        await lease.release();
      },
    },
  };
}
