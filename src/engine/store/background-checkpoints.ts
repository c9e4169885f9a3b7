import type { DatabaseSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';

/**
 * WAL checkpoints of SQLite databases, run on a worker thread.
 *
 * In WAL mode a commit appends pages to the `-wal` file and fsyncs it; a checkpoint later copies
 * them into the database file and fsyncs that. SQLite runs the checkpoint inside whichever commit
 * crosses `wal_autocheckpoint` pages — on the thread that commits, which in Sluice is the pipeline's
 * one JavaScript thread. Run on their own connection here, checkpoints overlap the pipeline's work
 * instead. Durability is unchanged: a page is on disk, in the WAL, when its commit returns. The
 * committing connection keeps a higher `wal_autocheckpoint` as a safety net (`SAFETY_PAGES`), so the
 * WAL stays bounded even if this thread falls behind.
 */
const SAFETY_PAGES = 16_384;

const INTERVAL_MS = 1000;

// CommonJS, run with `eval`: no file to resolve next to the compiled or stripped sources.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { DatabaseSync } = require('node:sqlite');
const open = new Map();
parentPort.on('message', (message) => {
  if (message.watch !== undefined) {
    try {
      const db = new DatabaseSync(message.watch, { timeout: 1000 });
      db.exec('PRAGMA synchronous = FULL');
      open.set(message.watch, db);
    } catch {
      // Not checkpointed here: the committing connection's own autocheckpoint still applies.
    }
  }
  if (message.unwatch !== undefined) {
    const db = open.get(message.unwatch);
    open.delete(message.unwatch);
    try { db?.close(); } catch {}
    parentPort.postMessage({ unwatched: message.unwatch });
  }
});
setInterval(() => {
  for (const db of open.values()) {
    // PASSIVE never waits for or blocks the writer; a busy database is simply tried again next time.
    try { db.exec('PRAGMA wal_checkpoint(PASSIVE)'); } catch {}
  }
}, workerData.intervalMs);
`;

interface Thread {
  readonly worker: Worker;
  exited: boolean;
}

let thread: Thread | undefined;
const watching = new Map<string, number>();

function startThread(): Thread {
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { intervalMs: INTERVAL_MS } });
  worker.unref();
  const started: Thread = { worker, exited: false };
  // A thread that dies is not an error of the store: its writers' own autocheckpoint takes over.
  worker.on('error', () => undefined);
  worker.once('exit', () => {
    started.exited = true;
    if (thread === started) {
      thread = undefined;
      watching.clear();
    }
  });
  return started;
}

/**
 * Raises the autocheckpoint of `db` to the safety net, for a connection that writes to a database
 * another connection checkpoints in the background (a commit never runs a checkpoint on its thread).
 */
export function deferAutocheckpoint(db: DatabaseSync): void {
  db.exec(`PRAGMA wal_autocheckpoint = ${SAFETY_PAGES};`);
}

/**
 * Checkpoints the database at `path` in the background until the returned function is called, and
 * raises the autocheckpoint of `db` (the connection that commits to it) to the safety net. Shared by
 * every store of the process (one thread); never keeps the process alive.
 */
export function checkpointInBackground(db: DatabaseSync, path: string): () => Promise<void> {
  deferAutocheckpoint(db);
  thread ??= startThread();
  const current = thread;
  const count = watching.get(path) ?? 0;
  watching.set(path, count + 1);
  if (count === 0) current.worker.postMessage({ watch: path });
  let released = false;
  return async () => {
    if (released || current.exited || thread !== current) return;
    released = true;
    const left = (watching.get(path) ?? 1) - 1;
    if (left > 0) {
      watching.set(path, left);
      return;
    }
    watching.delete(path);
    // Wait for the worker to close its connection, so the caller's close is the last one.
    await new Promise<void>((resolve) => {
      const onMessage = (message: { unwatched?: string }) => {
        if (message.unwatched !== path) return;
        current.worker.off('message', onMessage);
        current.worker.off('exit', done);
        resolve();
      };
      const done = () => resolve();
      current.worker.on('message', onMessage);
      current.worker.once('exit', done);
      current.worker.postMessage({ unwatch: path });
    });
    if (watching.size === 0 && thread === current) {
      thread = undefined;
      await current.worker.terminate();
    }
  };
}
