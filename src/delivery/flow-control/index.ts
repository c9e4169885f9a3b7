/**
 * Delivery flow control: per-endpoint throttle policy and the gate that enforces it (rate, bursts,
 * adaptive concurrency, quota pacing, scheduling windows, priorities, retries, persistent breaker).
 */
export {
  AdaptiveLimiter,
  type AdaptiveLimiterOptions,
  type LimitSignal,
  type Permit,
} from './adaptive-limit.ts';
export {
  type BreakerEvent,
  type BreakerStateName,
  type BreakerStateStore,
  MemoryBreakerStateStore,
  PersistentBreaker,
  type PersistentBreakerOptions,
  SqliteBreakerStateStore,
} from './breaker.ts';
export { type Clock, sleep, systemClock } from './clock.ts';
export {
  backoffMs,
  classifyFailure,
  type Failure,
  type FailureKind,
  isRetryable,
  retryDelayMs,
} from './failure.ts';
export {
  type AttemptContext,
  createDeliveryGate,
  type DeliveryGate,
  type DeliveryGateDeps,
  type GateEvent,
  type GateStats,
} from './gate.ts';
export { BREAKER_STATE_VALUES, type FlowMetrics, flowMetrics } from './metrics.ts';
export {
  DEFAULT_THROTTLE_POLICY,
  parseThrottlePolicy,
  type SchedulingWindow,
  ThrottlePoliciesSchema,
  type ThrottlePolicy,
  type ThrottlePolicyInput,
  ThrottlePolicySchema,
  WindowSchema,
} from './policy.ts';
export { WeightedQueue } from './priority-queue.ts';
export {
  parseSforceLimitInfo,
  type QuotaMode,
  QuotaPacer,
  type QuotaPacerOptions,
  type QuotaReport,
  type QuotaUsage,
} from './quota-pacer.ts';
export { isRetryWriteResult, type RetryPerEntryOptions, retryPerEntry } from './retry-per-entry.ts';
export { TokenBucket, type TokenBucketOptions } from './token-bucket.ts';
export { isInWindow, isOpen, msUntilOpen } from './windows.ts';
