/**
 * Summarises a V8 CPU profile (`node --cpu-prof`) into where the time went: self time per source file
 * (dependencies folded per package) and inclusive time of the repository's own functions. Enough to
 * name a bottleneck in a report; open the `.cpuprofile` in Chrome DevTools for the rest.
 */
import { readFileSync } from 'node:fs';
import { REPO_ROOT } from '../../src/testkit/data.ts';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface ProfileEntry {
  readonly name: string;
  readonly ms: number;
  readonly share: number;
}

export interface ProfileSummary {
  readonly file: string;
  readonly totalMs: number;
  /** Self time per file: `src/…` paths, `npm:<package>`, `node:…`, or V8's `(idle)`, `(garbage collector)`. */
  readonly byFile: readonly ProfileEntry[];
  /** Inclusive time of functions in the repository (`function file:line`). */
  readonly functions: readonly ProfileEntry[];
}

const ROOT_URL = `file://${REPO_ROOT}/`;

function fileOf(url: string, functionName: string): string {
  if (url === '') return `(${functionName.replace(/^\(|\)$/g, '') || 'native'})`;
  const path = url.startsWith(ROOT_URL) ? url.slice(ROOT_URL.length) : url;
  const modules = path.lastIndexOf('node_modules/');
  if (modules >= 0) {
    const parts = path.slice(modules + 'node_modules/'.length).split('/');
    return `npm:${parts[0]?.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]}`;
  }
  return path;
}

function top(counts: Map<string, number>, total: number, n: number): ProfileEntry[] {
  return [...counts.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, us]) => ({ name, ms: Math.round(us / 1000), share: Math.round((us / total) * 1000) / 10 }));
}

export function summariseProfile(file: string, n = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => {
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  let total = 0;
  const byFile = new Map<string, number>();
  const inclusive = new Map<string, number>();
  for (const [id, us] of self) {
    total += us;
    const node = byId.get(id);
    if (!node) continue;
    const where = fileOf(node.callFrame.url, node.callFrame.functionName);
    byFile.set(where, (byFile.get(where) ?? 0) + us);
    // Each repository function on the stack once, however deep the recursion.
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (!frame?.url.startsWith(ROOT_URL) || frame.url.includes('/node_modules/')) continue;
      const name = `${frame.functionName || '(anonymous)'} ${fileOf(frame.url, '')}:${frame.lineNumber + 1}`;
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + us);
    }
  }
  return {
    file,
    totalMs: Math.round(total / 1000),
    byFile: top(byFile, total, n),
    functions: top(inclusive, total, n * 2),
  };
}
