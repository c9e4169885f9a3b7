/**
 * The lease a `sluice run` or `sluice ingest` loop keeps in cluster mode: taken before a cycle, kept
 * from cycle to cycle, and taken again after it is lost. While another process holds it the loop
 * stands by, saying so once per holder; `--once` is refused instead (FLOW_BUSY).
 */
import { type FlowLease, flowBusy, type LeaseAttempt } from '../engine/store/pg-lease.ts';
import { printJson, printLine, reportError } from './output.ts';

export interface LeaseKeeper {
  /** Aborts when the lease held is lost. */
  readonly signal: AbortSignal | undefined;
  /**
   * Before a cycle: `run` when this process holds the lease (or needs none), `wait` to pause and ask
   * again (standing by, or the server unreachable: reported), or an exit code for `--once`.
   */
  take(): Promise<'run' | 'wait' | number>;
  release(): Promise<void>;
}

export function leaseKeeper(options: {
  /** Absent without cluster mode: every cycle runs. */
  readonly acquire: (() => Promise<LeaseAttempt>) | undefined;
  /** The lease's name as messages give it (`flow`, or `flow@ingest`). */
  readonly name: string;
  readonly json: boolean;
  readonly once: boolean;
}): LeaseKeeper {
  const { acquire, name, json, once } = options;
  let lease: FlowLease | undefined;
  let standingBy: string | undefined;
  return {
    get signal() {
      return lease?.signal;
    },
    async take() {
      if (acquire === undefined || (lease !== undefined && !lease.signal.aborted)) return 'run';
      await lease?.release();
      lease = undefined;
      let attempt: LeaseAttempt;
      try {
        attempt = await acquire();
      } catch (err) {
        // The server is unreachable: a loop says so and asks again next cycle.
        const code = reportError(err, json);
        return once ? code : 'wait';
      }
      if (!attempt.acquired) {
        const busy = flowBusy(name, attempt.holder);
        if (once) return reportError(busy, json);
        const who = JSON.stringify(attempt.holder ?? {});
        if (standingBy !== who) {
          standingBy = who;
          if (json) printJson({ flow: name, standingBy: true, holder: attempt.holder ?? null });
          else printLine(`${busy.message} Standing by: this process takes over when it stops.`);
        }
        return 'wait';
      }
      lease = attempt.lease;
      if (standingBy !== undefined) {
        standingBy = undefined;
        if (json) printJson({ flow: name, tookOver: true });
        else printLine(`${name}: took over (the lease is free)`);
      }
      return 'run';
    },
    async release() {
      await lease?.release();
      lease = undefined;
    },
  };
}
