/**
 * Consent-aware batching: items travel together only when they share purpose of use, consent scope,
 * consent policy version, recipient role and geography, so one signed envelope states one legal basis.
 * Batch ids are a hash of (key, sequence, run): retrying a run re-creates the same batches with the same
 * ids, which lets the receiver recognise a resend instead of applying it twice.
 */
import type { ConsentDecision } from '../consent/evaluate.ts';
import { SluiceError } from '../errors/index.ts';
import { canonicalHash, canonicalJson } from './canonical-json.ts';

export interface BatchKey {
  /** PurposeOfUse code. */
  readonly purpose: string;
  readonly consentScope: string;
  readonly policyVersion: string;
  readonly recipientRole: string;
  /** State / region code (e.g. `US-MA`); never finer than a state for PHI. */
  readonly geography: string;
}

export interface Batch<T> {
  readonly batchId: string;
  readonly key: BatchKey;
  /** 0-based position of this batch among the batches of its key in the run. */
  readonly sequence: number;
  readonly items: readonly T[];
}

export interface GroupOptions {
  /** Largest number of items in one batch (e.g. 200 for Salesforce sObject Collections). */
  readonly maxSize: number;
  /** Identifies the run; a retry of the run passes the same value. */
  readonly runId: string;
}

const KEY_PARTS = ['purpose', 'consentScope', 'policyVersion', 'recipientRole', 'geography'] as const;

/** A collision-free string form of a key (canonical JSON, so no separator can be smuggled in a part). */
export function batchKeyString(key: BatchKey): string {
  return canonicalJson(pick(key));
}

export function batchIdFor(key: BatchKey, sequence: number, runId: string): string {
  return `batch-${canonicalHash({ v: 1, key: pick(key), run: runId, seq: sequence }).slice(0, 32)}`;
}

/**
 * Splits items into batches. Keys are ordered by their string form and items keep their input order
 * within a key, so the same input gives the same batches. Never mixes keys; throws BATCH_KEY_INVALID when
 * an item's key has an empty part.
 */
export function groupIntoBatches<T>(
  items: readonly T[],
  keyOf: (item: T) => BatchKey,
  options: GroupOptions,
): Batch<T>[] {
  if (!Number.isInteger(options.maxSize) || options.maxSize < 1) {
    throw new SluiceError('CFG_FLOW_INVALID', 'Batch maxSize must be a positive integer.', {
      details: { key: 'maxSize' },
    });
  }
  if (options.runId.trim() === '') {
    throw new SluiceError('CFG_FLOW_INVALID', 'Batching needs a non-empty run id.', {
      details: { key: 'runId' },
    });
  }
  const groups = new Map<string, { key: BatchKey; items: T[] }>();
  items.forEach((item, index) => {
    const key = pick(keyOf(item));
    for (const part of KEY_PARTS) {
      if (typeof key[part] !== 'string' || key[part].trim() === '') {
        throw new SluiceError('BATCH_KEY_INVALID', `Item ${index} has an empty batch-key part: ${part}.`, {
          details: { index, part },
        });
      }
    }
    const name = canonicalJson(key);
    const group = groups.get(name);
    if (group === undefined) groups.set(name, { key, items: [item] });
    else group.items.push(item);
  });
  const batches: Batch<T>[] = [];
  for (const name of [...groups.keys()].sort()) {
    const group = groups.get(name) as { key: BatchKey; items: T[] };
    for (let sequence = 0; sequence * options.maxSize < group.items.length; sequence++) {
      const start = sequence * options.maxSize;
      batches.push({
        batchId: batchIdFor(group.key, sequence, options.runId),
        key: group.key,
        sequence,
        items: group.items.slice(start, start + options.maxSize),
      });
    }
  }
  return batches;
}

/**
 * The batch key of an item from its consent decision. Undefined unless the decision is a permit: an item
 * without a permit is never batched for sending.
 */
export function batchKeyFromDecision(
  decision: ConsentDecision,
  parts: { readonly purpose: string; readonly recipientRole: string; readonly geography: string },
): BatchKey | undefined {
  if (decision.decision !== 'permit') return undefined;
  return {
    purpose: parts.purpose,
    consentScope: decision.basis.consentScope ?? 'flow-default',
    policyVersion: decision.policyVersion,
    recipientRole: parts.recipientRole,
    geography: parts.geography,
  };
}

/** Only the five key parts, so extra properties on a caller's object never change ids. */
function pick(key: BatchKey): BatchKey {
  return {
    purpose: key.purpose,
    consentScope: key.consentScope,
    policyVersion: key.policyVersion,
    recipientRole: key.recipientRole,
    geography: key.geography,
  };
}
