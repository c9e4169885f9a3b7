import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ConsentDecision } from '../consent/evaluate.ts';
import { isSluiceError } from '../errors/index.ts';
import {
  type BatchKey,
  batchIdFor,
  batchKeyFromDecision,
  batchKeyString,
  groupIntoBatches,
} from './group.ts';

interface Item {
  readonly id: number;
  readonly key: BatchKey;
}

const key = (partial: Partial<BatchKey> = {}): BatchKey => ({
  purpose: 'HMARKT',
  consentScope: 'hcp-multichannel',
  policyVersion: 'p1',
  recipientRole: 'manufacturer',
  geography: 'US-MA',
  ...partial,
});

const keyArb: fc.Arbitrary<BatchKey> = fc.record({
  purpose: fc.constantFrom('TREAT', 'HMARKT'),
  consentScope: fc.constantFrom('patient-privacy', 'hcp-multichannel'),
  policyVersion: fc.constantFrom('p1', 'p2'),
  recipientRole: fc.constantFrom('manufacturer', 'PRCP'),
  geography: fc.constantFrom('US-MA', 'US-CA', 'US-NY'),
});

describe('groupIntoBatches', () => {
  it('never mixes keys, respects the size limit and keeps every item once, in order', () => {
    fc.assert(
      fc.property(fc.array(keyArb, { maxLength: 300 }), fc.integer({ min: 1, max: 40 }), (keys, maxSize) => {
        const items: Item[] = keys.map((k, id) => ({ id, key: k }));
        const batches = groupIntoBatches(items, (i) => i.key, { maxSize, runId: 'run-1' });
        const seen: number[] = [];
        for (const batch of batches) {
          expect(batch.items.length).toBeGreaterThan(0);
          expect(batch.items.length).toBeLessThanOrEqual(maxSize);
          for (const item of batch.items) expect(batchKeyString(item.key)).toBe(batchKeyString(batch.key));
          const ids = batch.items.map((i) => i.id);
          expect([...ids].sort((a, b) => a - b)).toEqual(ids);
          seen.push(...ids);
        }
        expect(seen.sort((a, b) => a - b)).toEqual(items.map((i) => i.id));
        expect(new Set(batches.map((b) => b.batchId)).size).toBe(batches.length);
      }),
    );
  });

  it('gives a retried run the same batches and ids, and another run other ids', () => {
    const items: Item[] = Array.from({ length: 25 }, (_, id) => ({
      id,
      key: key({ geography: id % 2 === 0 ? 'US-MA' : 'US-CA' }),
    }));
    const first = groupIntoBatches(items, (i) => i.key, { maxSize: 10, runId: 'run-7' });
    const retry = groupIntoBatches(items, (i) => i.key, { maxSize: 10, runId: 'run-7' });
    expect(retry).toEqual(first);
    expect(first.map((b) => [b.key.geography, b.sequence, b.items.length])).toEqual([
      ['US-CA', 0, 10],
      ['US-CA', 1, 2],
      ['US-MA', 0, 10],
      ['US-MA', 1, 3],
    ]);
    expect(first[0]?.batchId).toBe(batchIdFor(key({ geography: 'US-CA' }), 0, 'run-7'));
    expect(first[0]?.batchId).toMatch(/^batch-[A-Za-z0-9_-]{32}$/);
    const other = groupIntoBatches(items, (i) => i.key, { maxSize: 10, runId: 'run-8' });
    expect(other.map((b) => b.batchId)).not.toContain(first[0]?.batchId);
    // Extra properties on a key object do not change the id.
    expect(batchIdFor({ ...key(), extra: 'x' } as BatchKey, 0, 'r')).toBe(batchIdFor(key(), 0, 'r'));
  });

  it('cannot be fooled by separators inside key parts', () => {
    const a = key({ purpose: 'TREAT|x', consentScope: 'y' });
    const b = key({ purpose: 'TREAT', consentScope: 'x|y' });
    const batches = groupIntoBatches([a, b], (k) => k, { maxSize: 10, runId: 'r' });
    expect(batches).toHaveLength(2);
    expect(batchIdFor(a, 0, 'r')).not.toBe(batchIdFor(b, 0, 'r'));
  });

  it('refuses empty key parts and bad options', () => {
    const error = (() => {
      try {
        groupIntoBatches([key(), key({ geography: ' ' })], (k) => k, { maxSize: 5, runId: 'r' });
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(isSluiceError(error) && error.code).toBe('BATCH_KEY_INVALID');
    expect(isSluiceError(error) && error.details).toEqual({ index: 1, part: 'geography' });
    expect(() => groupIntoBatches([key()], (k) => k, { maxSize: 0, runId: 'r' })).toThrow(/maxSize/);
    expect(() => groupIntoBatches([key()], (k) => k, { maxSize: 1.5, runId: 'r' })).toThrow(/maxSize/);
    expect(() => groupIntoBatches([key()], (k) => k, { maxSize: 1, runId: '' })).toThrow(/run id/);
    expect(groupIntoBatches([], (k: BatchKey) => k, { maxSize: 1, runId: 'r' })).toEqual([]);
  });
});

describe('batchKeyFromDecision', () => {
  const decision = (value: ConsentDecision['decision'], consentScope?: string): ConsentDecision => ({
    decision: value,
    basis: {
      rule: 'provision',
      reason: 'x',
      considered: 1,
      skipped: [],
      ...(consentScope ? { consentScope } : {}),
    },
    policyVersion: 'policy-9',
  });
  const parts = { purpose: 'HMARKT', recipientRole: 'manufacturer', geography: 'US-MA' };

  it('keys permitted items by their consent scope and policy version', () => {
    expect(batchKeyFromDecision(decision('permit', 'hcp-multichannel'), parts)).toEqual({
      ...parts,
      consentScope: 'hcp-multichannel',
      policyVersion: 'policy-9',
    });
    expect(batchKeyFromDecision(decision('permit'), parts)?.consentScope).toBe('flow-default');
  });

  it('never keys an item without a permit', () => {
    expect(batchKeyFromDecision(decision('deny', 'x'), parts)).toBeUndefined();
    expect(batchKeyFromDecision(decision('not-applicable'), parts)).toBeUndefined();
  });
});
