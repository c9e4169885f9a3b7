// The thread of `WriterThread`: one connection to a store, one write at a time, in the order the
// writes arrive.
import { parentPort, workerData } from 'node:worker_threads';
import { SluiceError } from '../../core/errors/index.ts';
import { SqliteAuditStore } from '../audit/sqlite-audit-store.ts';
import type { AppendBatch } from '../audit/store.ts';
import type { PayloadKey } from './payload-cipher.ts';
import { SqliteStateStore } from './sqlite-store.ts';
import type { PageCommit } from './state-store.ts';

const port = parentPort;
if (port === null) throw new Error('writer-thread-worker runs as a worker thread');
const path = String(workerData.path);
const checkpointedElsewhere = workerData.checkpointedElsewhere === true;

const writer: { write(value: unknown): Promise<void>; close(): Promise<void> } = (() => {
  if (workerData.kind === 'audit') {
    const store = SqliteAuditStore.open(path, { checkpointedElsewhere });
    return { write: (batch) => store.append(batch as AppendBatch), close: () => store.close() };
  }
  const key = workerData.payloadKey as PayloadKey | undefined;
  const store = SqliteStateStore.open(path, { checkpointedElsewhere, ...(key ? { payloadKey: key } : {}) });
  return { write: (commit) => store.commitPage(commit as PageCommit), close: () => store.close() };
})();

let queue: Promise<void> = Promise.resolve();
port.on('message', (message: { id?: number; write?: unknown; close?: true }) => {
  queue = queue.then(async () => {
    if (message.close) {
      await writer.close();
      port.postMessage({ closed: true });
      return;
    }
    const id = message.id as number;
    try {
      await writer.write(message.write);
      port.postMessage({ id, ok: true });
    } catch (err) {
      const failure = err instanceof SluiceError ? err : undefined;
      const cause = failure?.cause instanceof Error ? failure.cause.message : undefined;
      port.postMessage({
        id,
        code: failure?.code ?? 'STORE_WRITE_FAILED',
        message: failure?.message ?? 'A write to the store failed and was rolled back.',
        ...(failure && Object.keys(failure.details).length > 0 ? { details: failure.details } : {}),
        ...(cause === undefined ? {} : { cause }),
      });
    }
  });
});
