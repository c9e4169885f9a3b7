import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildEnvelope, type EnvelopeAlg, type SigningKey, signEnvelope } from '../../core/batch/envelope.ts';
import { SluiceError } from '../../core/errors/index.ts';
import type { TargetWrite } from '../../core/mapping/canonical-to-veeva.ts';
import type { Issue } from '../../core/mapping/outcome.ts';
import type { Target, WriteResult } from '../../core/ports/target.ts';
import type { BatchManifest, LedgerEntry, StateStore } from '../store/state-store.ts';
import { stableHash } from './stable-hash.ts';

/** One source record's writes, as the record stages produced them. */
export interface DeliveryItem {
  /** Position of the source record in its page. */
  readonly index: number;
  readonly writes: readonly TargetWrite[];
  readonly ledgerRef: string;
  /** The person's pseudonym when the data needs consent at send time. */
  readonly subject?: string;
  /** Coarse geography, for consent-aware batch grouping. */
  readonly region?: string;
}

export interface DeliveryFailure {
  readonly index: number;
  readonly code: 'TGT_RECORD_REJECTED' | 'TGT_AMBIGUOUS_MATCH';
  readonly issues: readonly Issue[];
}

export interface DeliveryResult {
  readonly ledger: LedgerEntry[];
  readonly manifests: BatchManifest[];
  readonly failures: DeliveryFailure[];
  readonly created: number;
  readonly updated: number;
  readonly unchanged: number;
  readonly batches: number;
  /** Writes delivered or unchanged per source record index. */
  readonly deliveredByIndex: Map<number, number>;
}

export interface DeliveryContext {
  readonly flow: string;
  readonly runId: string;
  readonly target: Target;
  readonly store: StateStore;
  readonly maxBatch: number;
  readonly mappingVersion: string;
  readonly signal: AbortSignal;
  /** Rounds for entries the target asked to retry (e.g. per-entry 429); default 4. */
  readonly entryRetries?: number;
  readonly entryRetryDelayMs?: number;
  /** Ignore the ledger: send even unchanged records (a replay after the target lost data). */
  readonly resend?: boolean;
  /**
   * Target records (`object` NUL `externalId`) this run removed whose ledger rows are not committed yet:
   * sent whatever the ledger says.
   */
  readonly removed?: ReadonlySet<string>;
  /** Awaited before each request; throws to stop the delivery (the flow's kill switch). */
  readonly beforeRequest?: () => Promise<void>;
  /**
   * The consent-aware batch key of a record (purpose, consent scope and policy, recipient role,
   * geography): records of different keys never share a batch. Absent: one key for all.
   */
  readonly batchKeyOf?: (item: DeliveryItem) => string;
  /** `reject-batch`: a batch goes all or nothing (one failing record fails its whole batch). */
  readonly onItemFailure?: 'quarantine-item' | 'reject-batch';
  /** Upsert requests of one object and rank in flight at once (the gate may allow fewer); default 4. */
  readonly concurrency?: number;
  /** Names this page within the run (stream and page number): batch ids derive from it. */
  readonly pageKey?: string;
  /** Batch envelopes: every upsert request is one batch with a manifest, signed when a key is set. */
  readonly sealing?: BatchSealing;
}

/** What every batch envelope of a run says, and the key that signs it. */
export interface BatchSealing {
  readonly sourceSystem: string;
  readonly targetSystem: string;
  readonly purpose: string;
  readonly policyVersion: string;
  readonly signingKey?: SigningKey;
  readonly alg?: EnvelopeAlg;
  /**
   * When consent was checked for this page's records (the batch's creation instant): the instant the
   * send-time refresh started reading the source, whose state the check used.
   */
  readonly checkedAt?: Date;
}

const DEFAULT_CONCURRENCY = 4;

/** Runs `fn` over `items` with at most `limit` at once; the first failure rejects after the others settle. */
async function forEachLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: unknown;
  const worker = async (): Promise<void> => {
    while (next < items.length && failure === undefined) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== undefined) throw failure;
}

interface Pending {
  readonly item: DeliveryItem;
  readonly write: TargetWrite;
  readonly hash: string;
}

/**
 * Delivers a page of records: parents before children (by rank), one upsert request per object and
 * chunk, only what the ledger shows has changed. A rejected or ambiguous parent fails its whole
 * record (children are not written). Per-entry transient answers are retried; if they persist the
 * page fails, so its checkpoint does not move.
 */
export async function deliverPage(
  items: readonly DeliveryItem[],
  ctx: DeliveryContext,
): Promise<DeliveryResult> {
  const failed = new Map<number, DeliveryFailure>();
  const ledger: LedgerEntry[] = [];
  const deliveredByIndex = new Map<number, number>();
  const manifests: BatchManifest[] = [];
  let sequenceNext = 0;
  let created = 0;
  let updated = 0;
  let unchanged = 0;
  let batches = 0;

  // Later records win when two records of a page write the same target record.
  const byKey = new Map<string, Pending>();
  for (const item of items) {
    for (const write of item.writes) {
      const hash = stableHash({ object: write.object, fields: write.fields, version: ctx.mappingVersion });
      byKey.set(`${write.object}\u0000${write.externalId}`, { item, write, hash });
    }
  }
  const ranks = [...new Set([...byKey.values()].map((p) => p.write.rank))].sort((a, b) => a - b);

  for (const rank of ranks) {
    const byObject = new Map<string, Pending[]>();
    for (const p of byKey.values()) {
      if (p.write.rank !== rank || failed.has(p.item.index)) continue;
      const list = byObject.get(p.write.object) ?? [];
      list.push(p);
      byObject.set(p.write.object, list);
    }
    for (const [object, pendings] of byObject) {
      const known = await ctx.store.getLedger(
        ctx.flow,
        object,
        pendings.map((p) => p.write.externalId),
      );
      const toSend: Pending[] = [];
      for (const p of pendings) {
        if (
          !ctx.resend &&
          known.get(p.write.externalId)?.payloadHash === p.hash &&
          !ctx.removed?.has(`${object}\u0000${p.write.externalId}`)
        ) {
          unchanged++;
          deliveredByIndex.set(p.item.index, (deliveredByIndex.get(p.item.index) ?? 0) + 1);
        } else toSend.push(p);
      }
      let queue = toSend;
      for (let round = 0; queue.length > 0; round++) {
        if (round > (ctx.entryRetries ?? 4)) {
          throw new SluiceError(
            'TGT_HTTP_ERROR',
            `${queue.length} ${object} record(s) were still refused as transient after ${round} attempts.`,
            { details: { object, records: queue.length } },
          );
        }
        if (round > 0)
          await sleep((ctx.entryRetryDelayMs ?? 500) * 2 ** (round - 1), undefined, { signal: ctx.signal });
        const retry: Pending[] = [];
        const chunks: { key: string; records: Pending[] }[] = [];
        const byKey = new Map<string, Pending[]>();
        for (const p of queue) {
          const key = ctx.batchKeyOf?.(p.item) ?? '';
          const list = byKey.get(key) ?? [];
          list.push(p);
          byKey.set(key, list);
        }
        for (const [key, list] of byKey) {
          for (let start = 0; start < list.length; start += ctx.maxBatch) {
            chunks.push({ key, records: list.slice(start, start + ctx.maxBatch) });
          }
        }
        // Chunks of one object and rank go out concurrently; the target's flow-control gate decides how
        // many are really in flight and at what rate.
        await forEachLimit(
          chunks,
          ctx.concurrency ?? DEFAULT_CONCURRENCY,
          async ({ key, records: chunk }) => {
            const first = chunk[0] as Pending;
            const sequence = sequenceNext++;
            await ctx.beforeRequest?.();
            const sealed = ctx.sealing ? sealer(ctx, ctx.sealing, object, sequence, chunk) : undefined;
            const results = await ctx.target.upsert(
              object,
              first.write.externalIdField,
              chunk.map((p) => p.write),
              ctx.signal,
              {
                ...(sealed ? { seal: sealed.seal } : {}),
                ...(ctx.onItemFailure === 'reject-batch' ? { allOrNone: true } : {}),
              },
            );
            batches++;
            const manifest = sealed?.manifest();
            if (manifest) {
              const counts: Record<string, number> = {};
              for (const r of results) counts[r.status] = (counts[r.status] ?? 0) + 1;
              manifests.push({ ...manifest, results: counts, ...(key ? { batchKey: key } : {}) });
            }
            chunk.forEach((p, i) => {
              const result = results[i] as WriteResult;
              switch (result.status) {
                case 'created':
                case 'updated':
                  if (result.status === 'created') created++;
                  else updated++;
                  deliveredByIndex.set(p.item.index, (deliveredByIndex.get(p.item.index) ?? 0) + 1);
                  ledger.push({
                    flow: ctx.flow,
                    object,
                    externalId: p.write.externalId,
                    payloadHash: p.hash,
                    targetId: result.id,
                    sourceRef: p.item.ledgerRef,
                    mappingVersion: ctx.mappingVersion,
                    runId: ctx.runId,
                    deliveredAt: new Date().toISOString(),
                  });
                  break;
                case 'rejected':
                  fail(failed, p, 'TGT_RECORD_REJECTED', {
                    severity: 'error',
                    code: result.codes.join(',') || 'TGT_RECORD_REJECTED',
                    path: result.fields.length ? `${object}.${result.fields.join(',')}` : object,
                    message: `the CRM rejected the ${object} record: ${result.codes.join(', ') || 'no code'}`,
                  });
                  break;
                case 'ambiguous':
                  fail(failed, p, 'TGT_AMBIGUOUS_MATCH', {
                    severity: 'error',
                    code: 'TGT_AMBIGUOUS_MATCH',
                    path: `${object}.${p.write.externalIdField}`,
                    message: `the external id matched several ${object} records; nothing was written`,
                  });
                  break;
                case 'retry':
                  retry.push(p);
                  break;
              }
            });
          },
        );
        queue = retry;
      }
    }
  }
  return {
    // Writes that succeeded stay in the ledger even when a sibling failed: they are in the target.
    ledger,
    manifests,
    failures: [...failed.values()],
    created,
    updated,
    unchanged,
    batches,
    deliveredByIndex,
  };
}

/**
 * The envelope of one upsert request: built over the exact records the request carries, items named
 * by pseudonymous source ids, signed when the flow has a key. Its id is stable within the run.
 */
function sealer(
  ctx: DeliveryContext,
  sealing: BatchSealing,
  object: string,
  sequence: number,
  chunk: readonly Pending[],
): {
  seal: (records: readonly unknown[]) => Promise<string | undefined>;
  manifest: () => Omit<BatchManifest, 'results'> | undefined;
} {
  const batchId = `b${createHash('sha256')
    .update(`${ctx.runId}\u0000${ctx.pageKey ?? ''}\u0000${object}\u0000${sequence}`)
    .digest('hex')
    .slice(0, 31)}`;
  let built: Omit<BatchManifest, 'results'> | undefined;
  return {
    async seal(records) {
      const envelope = buildEnvelope(
        {
          batchId,
          sourceSystem: sealing.sourceSystem,
          targetSystem: sealing.targetSystem,
          purpose: sealing.purpose,
          consentPolicyVersion: sealing.policyVersion,
          createdAt: sealing.checkedAt ?? new Date(),
          resourceTypes: [object],
          items: chunk.map((p) => ({
            sourceId: p.item.ledgerRef,
            canonicalId: p.write.externalId,
            transformationVersion: ctx.mappingVersion,
            validationStatus: 'valid' as const,
          })),
        },
        records,
      );
      const jws = sealing.signingKey
        ? await signEnvelope(envelope, sealing.signingKey, sealing.alg ?? 'ES256')
        : undefined;
      built = {
        batchId,
        flow: ctx.flow,
        runId: ctx.runId,
        object,
        createdAt: envelope.createdAt,
        purpose: envelope.purpose,
        policyVersion: envelope.consentPolicyVersion,
        recordCount: envelope.recordCount,
        envelope: JSON.stringify(envelope),
        ...(jws === undefined ? {} : { jws }),
      };
      return jws;
    },
    manifest: () => built,
  };
}

function fail(
  failed: Map<number, DeliveryFailure>,
  p: Pending,
  code: DeliveryFailure['code'],
  issue: Issue,
): void {
  const existing = failed.get(p.item.index);
  if (existing) {
    failed.set(p.item.index, { ...existing, issues: [...existing.issues, issue] });
    return;
  }
  failed.set(p.item.index, { index: p.item.index, code, issues: [issue] });
}
