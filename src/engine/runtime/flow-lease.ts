/**
 * Commands that run a flow once (`run --once`, `replay`, a quarantine release, a reconcile repair) hold
 * the flow's lease while they run it, in cluster mode: a second process on another machine is refused
 * (`FLOW_BUSY`) instead of sending the same records at the same time. The embedded store needs none.
 */
import { flowBusy } from '../store/pg-lease.ts';
import type { FlowRuntime } from './build-flow.ts';

/**
 * Runs `work` while holding the flow's lease; `signal` aborts when the lease is lost (combine it with
 * the command's own). Throws FLOW_BUSY when another process holds it.
 */
export async function withFlowLease<T>(
  runtime: Pick<FlowRuntime, 'lease'>,
  flow: string,
  work: (signal: AbortSignal | undefined) => Promise<T>,
): Promise<T> {
  if (runtime.lease === undefined) return work(undefined);
  const attempt = await runtime.lease();
  if (!attempt.acquired) throw flowBusy(flow, attempt.holder);
  try {
    return await work(attempt.lease.signal);
  } finally {
    await attempt.lease.release();
  }
}

/** The signals a run stops on: the command's, and the lease's when it holds one. */
export function eitherSignal(
  own: AbortSignal | undefined,
  lease: AbortSignal | undefined,
): AbortSignal | undefined {
  if (own === undefined) return lease;
  if (lease === undefined) return own;
  return AbortSignal.any([own, lease]);
}
