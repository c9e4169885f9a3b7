import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { whileWaiting } from './while-waiting.ts';

async function* slow(delays: readonly number[], log: string[]): AsyncGenerator<number> {
  try {
    for (const [i, ms] of delays.entries()) {
      await sleep(ms);
      log.push(`item ${i}`);
      yield i;
    }
  } finally {
    log.push('source closed');
  }
}

describe('whileWaiting', () => {
  it('runs the work once, during the first wait that lasts long enough, before that item arrives', async () => {
    const log: string[] = [];
    const items: number[] = [];
    for await (const i of whileWaiting(slow([0, 80, 80], log), 20, () => log.push('work'))) items.push(i);
    expect(items).toEqual([0, 1, 2]);
    expect(log).toEqual(['item 0', 'work', 'item 1', 'item 2', 'source closed']);
  });

  it('never runs the work when no wait lasts long enough', async () => {
    const log: string[] = [];
    for await (const _ of whileWaiting(slow([0, 1, 1], log), 200, () => log.push('work'))) {
      // consume
    }
    expect(log).not.toContain('work');
  });

  it('ignores a failing work and keeps yielding', async () => {
    const log: string[] = [];
    const items: number[] = [];
    const failing = () => {
      log.push('work');
      throw new Error('definitions missing');
    };
    for await (const i of whileWaiting(slow([60, 0], log), 10, failing)) items.push(i);
    expect(items).toEqual([0, 1]);
    expect(log.filter((l) => l === 'work')).toHaveLength(1);
  });

  it('closes the source when the consumer stops early, and passes the source failure on', async () => {
    const log: string[] = [];
    for await (const i of whileWaiting(slow([0, 0, 0], log), 50, () => {})) if (i === 1) break;
    expect(log).toEqual(['item 0', 'item 1', 'source closed']);

    async function* broken(): AsyncGenerator<number> {
      yield 1;
      throw new Error('export failed');
    }
    const seen: number[] = [];
    await expect(async () => {
      for await (const i of whileWaiting(broken(), 50, () => {})) seen.push(i);
    }).rejects.toThrow('export failed');
    expect(seen).toEqual([1]);
  });
});
