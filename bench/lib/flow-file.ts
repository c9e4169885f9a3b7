/**
 * The benchmark's flow: examples/flows/epic-to-veeva.yaml with what a benchmark must change and nothing
 * else — file paths made absolute (the copy lives in a temp folder), the throttle opened wide (the bench
 * measures the pipeline, not a rate limit), the read mode chosen. Every stage stays, consent included:
 * the corpus seeds a permit Consent per patient for the flow's recipient and purpose.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { REPO_ROOT } from '../../src/testkit/data.ts';
import type { ConsentSpec } from '../corpus.ts';

export const EXAMPLE_FLOW = join(REPO_ROOT, 'examples', 'flows', 'epic-to-veeva.yaml');

export interface BenchFlowOptions {
  readonly mode: 'search' | 'bulk';
  readonly stateDir: string;
  /** `schedule.intervalSeconds` (loop mode of `sluice run`). */
  readonly intervalSeconds?: number;
  /** `source.overlapSeconds`; default: the example's. */
  readonly overlapSeconds?: number;
  /**
   * More of the flow file, merged in last (mappings key by key, anything else replaced): e.g.
   * `{ state: { encryption: {…}, postgres: {…} }, bus: { nats: {…} } }` for the cluster bench.
   */
  readonly extra?: Readonly<Record<string, unknown>>;
}

type Node = Record<string, unknown>;

function object(parent: Node, key: string): Node {
  const value = parent[key];
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`${EXAMPLE_FLOW}: ${key} is not a mapping`);
  }
  return value as Node;
}

/** Every `…File` key (key files, policy files…) becomes absolute: the copy lives elsewhere. */
function absoluteFiles(value: unknown, base: string): void {
  if (Array.isArray(value)) {
    for (const item of value) absoluteFiles(item, base);
    return;
  }
  if (typeof value !== 'object' || value === null) return;
  const node = value as Node;
  for (const [key, child] of Object.entries(node)) {
    if (key.endsWith('File') && typeof child === 'string' && !isAbsolute(child) && !child.includes('${')) {
      node[key] = resolve(base, child);
    } else {
      absoluteFiles(child, base);
    }
  }
}

const isMapping = (value: unknown): value is Node =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Merges `extra` into `into`: mappings key by key, anything else replaced. */
function merge(into: Node, extra: Readonly<Record<string, unknown>>): void {
  for (const [key, value] of Object.entries(extra)) {
    const current = into[key];
    if (isMapping(current) && isMapping(value)) merge(current, value);
    else into[key] = value;
  }
}

/** Writes the derived flow file to `path` and returns it. */
export function writeBenchFlow(path: string, options: BenchFlowOptions): string {
  const flow = parse(readFileSync(EXAMPLE_FLOW, 'utf8')) as Node;
  const source = object(flow, 'source');
  const target = object(flow, 'target');
  absoluteFiles(flow, dirname(EXAMPLE_FLOW));
  source.mode = options.mode;
  if (options.overlapSeconds !== undefined) source.overlapSeconds = options.overlapSeconds;
  const throttle = object(target, 'throttle');
  throttle.rate = 100_000;
  throttle.burst = 100_000;
  if (options.intervalSeconds !== undefined) flow.schedule = { intervalSeconds: options.intervalSeconds };
  object(flow, 'state').dir = options.stateDir;
  if (options.extra) merge(flow, options.extra);
  writeFileSync(path, stringify(flow));
  return path;
}

/** The recipient and purpose the example flow's consent stage checks; undefined if it has none. */
export function exampleConsentSpec(): ConsentSpec | undefined {
  const flow = parse(readFileSync(EXAMPLE_FLOW, 'utf8')) as Node;
  const consent = object(flow, 'stages').consent;
  if (typeof consent !== 'object' || consent === null) return undefined;
  const recipient = object(consent as Node, 'recipient');
  return { recipient: String(recipient.id), role: String(recipient.role), purpose: String(flow.purpose) };
}

/** How far back each cycle of the example flow re-reads (`source.overlapSeconds`, default 60). */
export function exampleOverlapSeconds(): number {
  const flow = parse(readFileSync(EXAMPLE_FLOW, 'utf8')) as Node;
  const overlap = object(flow, 'source').overlapSeconds;
  return typeof overlap === 'number' ? overlap : 60;
}

/** The environment the example flow reads (`${SLUICE_…}`), with a fresh random pseudonym key. */
export function benchFlowEnv(ehrUrl: string, crmUrl: string): Record<string, string> {
  return {
    SLUICE_EHR_URL: ehrUrl,
    SLUICE_CRM_URL: crmUrl,
    SLUICE_PSEUDONYM_KEY: randomBytes(32).toString('base64'),
  };
}
