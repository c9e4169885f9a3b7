import { z } from 'zod';

/**
 * Fault injection shared by both sandboxes. A fault rule matches requests by method and path and,
 * while it has uses left, replaces (or delays) the normal answer. Rules are evaluated in the order
 * they were added; the first matching rule with uses left applies.
 *
 * `retryAfter` is sent verbatim so tests can exercise every form real servers send: delta-seconds
 * ("2"), an HTTP-date, and malformed values ("soon", "-1", an epoch timestamp, "1.5").
 */
export const FaultSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('latency'), ms: z.number().int().min(0).max(120_000) }),
  z.object({
    kind: z.literal('status'),
    status: z.number().int().min(400).max(599),
    body: z.unknown().optional(),
    headers: z.record(z.string(), z.string()).optional(),
  }),
  z.object({
    kind: z.literal('rate-limit'),
    /** 429 by default; the CRM sandbox also uses 403 with REQUEST_LIMIT_EXCEEDED or 503. */
    status: z.number().int().min(400).max(599).default(429),
    retryAfter: z.string().optional(),
  }),
  z.object({ kind: z.literal('drop') }),
]);
export type Fault = z.infer<typeof FaultSchema>;

export const FaultRuleInputSchema = z.object({
  fault: FaultSchema,
  method: z.string().toUpperCase().optional(),
  /** Path prefix (without query string) the rule applies to; omitted means every non-control path. */
  path: z.string().optional(),
  /** How many matching requests the rule applies to; omitted means until removed. */
  times: z.number().int().positive().optional(),
});
export type FaultRuleInput = z.input<typeof FaultRuleInputSchema>;

export interface FaultRule {
  readonly id: number;
  readonly fault: Fault;
  readonly method: string | undefined;
  readonly path: string | undefined;
  remaining: number | undefined;
  hits: number;
}

export class FaultInjector {
  readonly #rules: FaultRule[] = [];
  #nextId = 1;

  add(input: FaultRuleInput): FaultRule {
    const parsed = FaultRuleInputSchema.parse(input);
    const rule: FaultRule = {
      id: this.#nextId++,
      fault: parsed.fault,
      method: parsed.method,
      path: parsed.path,
      remaining: parsed.times,
      hits: 0,
    };
    this.#rules.push(rule);
    return rule;
  }

  list(): readonly FaultRule[] {
    return this.#rules;
  }

  remove(id: number): boolean {
    const index = this.#rules.findIndex((r) => r.id === id);
    if (index < 0) return false;
    this.#rules.splice(index, 1);
    return true;
  }

  clear(): void {
    this.#rules.length = 0;
  }

  /** Finds the fault for a request and consumes one use of its rule. Control paths are never faulted. */
  take(method: string, path: string): Fault | undefined {
    if (path.startsWith('/__sandbox')) return undefined;
    for (const rule of this.#rules) {
      if (rule.remaining === 0) continue;
      if (rule.method && rule.method !== method.toUpperCase()) continue;
      if (rule.path && !path.startsWith(rule.path)) continue;
      rule.hits++;
      if (rule.remaining !== undefined) rule.remaining--;
      return rule.fault;
    }
    return undefined;
  }
}
