import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { SluiceError } from '../../core/errors/index.ts';
import { exampleFlowText } from '../../testkit/example-flow.ts';
import { loadFlow } from './load-flow.ts';

const dir = mkdtempSync(join(tmpdir(), 'sluice-flow-property-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SECRET = randomBytes(32).toString('hex');
const ENV = {
  SLUICE_EHR_URL: 'http://127.0.0.1:8081/fhir',
  SLUICE_CRM_URL: 'http://127.0.0.1:8082',
  SLUICE_PSEUDONYM_KEY: SECRET,
};

/** The example flow, its key and config paths made absolute so that copies here find them. */
const example = parse(exampleFlowText()) as Record<string, unknown>;

type Path = readonly (string | number)[];

/** Every key path of a parsed document. */
function pathsOf(value: unknown, at: Path = []): Path[] {
  if (value === null || typeof value !== 'object') return [at];
  return [
    at,
    ...Object.entries(value).flatMap(([k, v]) => pathsOf(v, [...at, Array.isArray(value) ? Number(k) : k])),
  ];
}
const PATHS = pathsOf(example).filter((p) => p.length > 0);

/** Deletes (`undefined`) or replaces the value at `path`; false when the path no longer exists. */
function mutate(doc: Record<string, unknown>, path: Path, value: unknown): boolean {
  let node: unknown = doc;
  for (const key of path.slice(0, -1)) {
    if (node === null || typeof node !== 'object') return false;
    node = (node as Record<string | number, unknown>)[key];
  }
  if (node === null || typeof node !== 'object') return false;
  const last = path.at(-1) as string | number;
  if (value === undefined) delete (node as Record<string | number, unknown>)[last];
  else (node as Record<string | number, unknown>)[last] = structuredClone(value);
  return true;
}

let files = 0;
/** Loads `text` as a flow file: the flow, or the SluiceError it was refused with. */
function load(text: string): unknown {
  const file = join(dir, `flow-${files++}.yaml`);
  writeFileSync(file, text);
  try {
    return loadFlow(file, { env: ENV, cwd: dir });
  } catch (err) {
    return err;
  }
}

describe('loadFlow on flow files it has never seen', () => {
  it('loads a mutated flow or refuses it with a CFG_ code, never crashing and never echoing the key', () => {
    const value = fc.oneof(
      fc.constant(undefined),
      fc.constant(null),
      fc.constant([]),
      fc.constant({}),
      fc.string(),
      fc.integer(),
      fc.double(),
      fc.boolean(),
      fc.anything(),
    );
    const mutation = fc.tuple(fc.constantFrom(...PATHS), value);
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), (mutations) => {
        const doc = structuredClone(example);
        for (const [path, v] of mutations) mutate(doc, path, v);
        const result = load(stringify(doc));
        if (!(result instanceof Error)) return;
        expect(result).toBeInstanceOf(SluiceError);
        expect((result as SluiceError).code).toMatch(/^CFG_/);
        expect(JSON.stringify((result as SluiceError).toJSON())).not.toContain(SECRET);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses an alias that contains itself and aliases that expand without bound', () => {
    const cycle = load('flow: &x\n  a: *x\nversion: 1\n');
    expect(cycle).toMatchObject({ code: 'CFG_FLOW_UNREADABLE' });
    expect((cycle as Error).message).toContain('refers to a node that contains it');
    const rows = ['a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]'];
    for (const [prev, name] of ['ab', 'bc', 'cd', 'de', 'ef'])
      rows.push(`${name}: &${name} [${Array(9).fill(`*${prev}`).join(', ')}]`);
    const bomb = load(`${rows.join('\n')}\n`);
    expect(bomb).toMatchObject({ code: 'CFG_FLOW_UNREADABLE' });
    expect((bomb as Error).message).toContain('expand too far');
    // A plain alias (a value written once, used twice) is fine.
    const text = stringify(example)
      .replace(/clientId: \$\{SLUICE_EHR_CLIENT_ID:-sluice-demo\}/, 'clientId: &client shared-client')
      .replace(/clientId: \$\{SLUICE_CRM_CLIENT_ID:-sluice-demo\}/, 'clientId: *client');
    const flow = load(text) as { file: { target: { auth: { clientId: string } } } };
    expect(flow.file.target.auth.clientId).toBe('shared-client');
  });
});
