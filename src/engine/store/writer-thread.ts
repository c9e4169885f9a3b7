import { Worker } from 'node:worker_threads';
import { type ErrorCode, type ErrorDetails, isErrorCode, SluiceError } from '../../core/errors/index.ts';
import type { PayloadKey } from './payload-cipher.ts';

/** Which store's writes the thread runs: the state store's page commits or the audit log's appends. */
export type WriterKind = 'state' | 'audit';

/** What the thread answers for each write. */
type Reply =
  | { readonly id: number; readonly ok: true }
  | {
      readonly id: number;
      readonly code: string;
      readonly message: string;
      readonly details?: ErrorDetails;
      readonly cause?: string;
    }
  | { readonly closed: true };

/**
 * The heavy writes of a SQLite store, on a thread of their own with their own connection.
 *
 * A state page commit writes a few hundred rows and an audit append a few hundred entries and Merkle
 * nodes, each fsyncing the WAL (`synchronous=FULL`). `node:sqlite` is synchronous, so on the
 * pipeline's thread that time is lost to the record stages and the network. Here the pipeline's thread
 * only hands the rows over and awaits the answer: writes still happen one at a time, in the order they
 * were asked for, each durable when its promise resolves, and a failed write rolls back and rejects
 * with its code and details, exactly as on the calling thread. Reads stay on the caller's connection
 * (WAL readers see every write once it has returned).
 */
export class WriterThread<W> {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  #next = 0;
  #last: Promise<unknown> = Promise.resolve();
  #stopped: SluiceError | undefined;
  #closing: Promise<void> | undefined;

  /**
   * `checkpointedElsewhere`: the caller's process checkpoints the database in the background, so the
   * thread's commits never run a checkpoint themselves (see `background-checkpoints.ts`).
   */
  constructor(
    kind: WriterKind,
    path: string,
    options: { checkpointedElsewhere: boolean; payloadKey?: PayloadKey },
  ) {
    this.#worker = new Worker(new URL('./writer-thread-worker.ts', import.meta.url), {
      workerData: {
        kind,
        path,
        checkpointedElsewhere: options.checkpointedElsewhere,
        ...(options.payloadKey ? { payloadKey: options.payloadKey } : {}),
      },
    });
    this.#worker.on('message', (reply: Reply) => this.#answer(reply));
    this.#worker.on('error', (err) => this.#stop(err));
    this.#worker.once('exit', () => this.#stop(undefined));
    this.#worker.unref();
  }

  /** Runs one write on the thread; resolves once it is durable. */
  write(write: W): Promise<void> {
    if (this.#stopped) return Promise.reject(this.#stopped);
    const id = this.#next++;
    const done = new Promise<void>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      // Only a write in flight keeps the process alive; an idle thread never does.
      this.#worker.ref();
      this.#worker.postMessage({ id, write });
    });
    this.#last = done.catch(() => undefined);
    return done;
  }

  /** Waits for the writes asked for, then closes the thread's connection and ends the thread. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#last;
      if (this.#stopped) return;
      this.#worker.ref();
      const closed = new Promise<void>((resolve) => {
        this.#worker.on('message', (reply: Reply) => {
          if ('closed' in reply) resolve();
        });
        this.#worker.once('exit', () => resolve());
      });
      this.#worker.postMessage({ close: true });
      await closed;
      await this.#worker.terminate();
    })();
    return this.#closing;
  }

  #answer(reply: Reply): void {
    if ('closed' in reply) return;
    const pending = this.#pending.get(reply.id);
    if (pending === undefined) return;
    this.#pending.delete(reply.id);
    if (this.#pending.size === 0) this.#worker.unref();
    if ('ok' in reply) pending.resolve();
    else {
      const code: ErrorCode = isErrorCode(reply.code) ? reply.code : 'STORE_WRITE_FAILED';
      pending.reject(
        new SluiceError(code, reply.message, {
          ...(reply.details ? { details: reply.details } : {}),
          ...(reply.cause === undefined ? {} : { cause: new Error(reply.cause) }),
        }),
      );
    }
  }

  /** The thread ended or failed: every write still waiting fails, and so does every later one. */
  #stop(err: Error | undefined): void {
    if (this.#stopped === undefined) {
      this.#stopped = new SluiceError(
        'STORE_WRITE_FAILED',
        'The store writer thread stopped; the writes it had not finished were not made.',
        err === undefined ? {} : { cause: err },
      );
    }
    for (const pending of this.#pending.values()) pending.reject(this.#stopped);
    this.#pending.clear();
  }
}
