import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { compile } from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { listResourceFiles } from '../../adapters/files/resource-files.ts';
import { REPO_ROOT, SAMPLE_DATA_DIR, sharedDataDir } from '../../testkit/data.ts';
import type { JsonObject } from '../fhir/resource.ts';
import { createMatrixEngine } from '../matrix/engine.ts';
import { epicContext, readResources, veevaContext } from '../matrix/testing.ts';
import type { AnyCanonicalRecord } from '../model/entities.ts';
import {
  compileFastOnly,
  compileFhirPath,
  explainFhirPath,
  isFastPath,
  isTrue,
  runtimeFallbacks,
} from './fhirpath.ts';

describe('compileFhirPath', () => {
  it('resolves choice types against the R4 model', () => {
    const fn = compileFhirPath('deceased');
    expect(fn({ resourceType: 'Patient', deceasedBoolean: true })).toEqual([true]);
    expect(fn({ resourceType: 'Patient', deceasedDateTime: '2020-01-01' }).map(String)).toEqual([
      '2020-01-01',
    ]);
    expect(fn({ resourceType: 'Patient' })).toEqual([]);
  });

  it('evaluates against plain JSON without mutating it', () => {
    const resource = { resourceType: 'Practitioner', active: false, name: [{ family: 'X' }] };
    const copy = structuredClone(resource);
    expect(compileFhirPath('active = false')(resource)).toEqual([true]);
    expect(compileFhirPath('name.family')(resource)).toEqual(['X']);
    expect(resource).toEqual(copy);
  });

  it('throws at compile time on an invalid expression', () => {
    for (const bad of ['deceased.exists( and', 'name.where(', "active = 'x", '))']) {
      expect(() => compileFhirPath(bad), bad).toThrow();
    }
  });

  it('isTrue accepts exactly [true]', () => {
    expect(isTrue([true])).toBe(true);
    expect(isTrue([])).toBe(false);
    expect(isTrue([false])).toBe(false);
    expect(isTrue([true, true])).toBe(false);
    expect(isTrue(['true'])).toBe(false);
    expect(isTrue([1])).toBe(false);
  });
});

describe('the FHIRPath fast path', () => {
  it('takes the subset and says why it leaves the rest to fhirpath.js', () => {
    for (const expr of [
      'id',
      "name.where(use.empty() or use!='old').first().given",
      "identifier.where(system='http://hl7.org/fhir/sid/us-npi').value",
      "subject.where(reference.startsWith('Patient/'))",
      'deceased.exists() and deceased != false',
      "lines.tail().join(', ')",
      'iif(text.exists(), text, coding.select(iif(code.exists(), code, display))).first()',
      "specialty.coding.select(system + '|' + code)",
      '$this.id = $this.id',
      'name.given.count()',
      '{}',
      "name.where(use = 'old').exists(use)",
    ]) {
      expect(explainFhirPath(expr), expr).toEqual({ fast: true });
    }
    const reasons: Record<string, RegExp> = {
      '(requester | performer).reference': /UnionExpression/,
      'subject.resolve()': /function resolve/,
      'value.ofType(Quantity)': /function ofType|type name Quantity/,
      'name[0]': /IndexerExpression/,
      '_birthDate.extension': /primitive extension/,
      'Resource.id': /type name Resource/,
      'DomainResource.text': /type name DomainResource/,
      'Object.id': /type name Object/,
      "name.family = 'O\\'Brien'": /string literal/,
      'multipleBirth = 2': /NumberLiteral/,
      'birthDate > @2000-01-01': /InequalityExpression/,
      "name.given & 'x'": /operator &/,
      'active xor true': /operator xor/,
      'name.first(1)': /first\(\) with 1 argument/,
      'name.constructor': /Object.prototype/,
      'name.`given`': /identifier/,
    };
    for (const [expr, reason] of Object.entries(reasons)) {
      const explained = explainFhirPath(expr);
      expect(explained.fast, expr).toBe(false);
      expect(explained.fast ? '' : explained.reason, expr).toMatch(reason);
    }
  });

  it('hands odd inputs to fhirpath.js at run time and gives its answer', () => {
    const given = compileFhirPath('name.given');
    const before = runtimeFallbacks();
    // A primitive with an extension: fhirpath.js reads `_given` beside `given`.
    const withExtension = {
      resourceType: 'Patient',
      name: [{ given: ['A', null, 'C'], _given: [null, { extension: [{ url: 'u', valueString: 'x' }] }] }],
    };
    expect(given(withExtension)).toEqual(slow('name.given', withExtension));
    expect(compileFastOnly('name.given')?.(withExtension)).toBeUndefined();
    // Dates compare as dates (here: not equal to a plain string), and precision matters.
    const dates = { resourceType: 'Patient', birthDate: '1990-01-01' };
    expect(compileFhirPath("birthDate = '1990-01-01'")(dates)).toEqual([false]);
    expect(compileFhirPath('birthDate = birthDate')(dates)).toEqual([true]);
    // A collection where a singleton is expected is fhirpath's error, word for word.
    const twoNames = { resourceType: 'Patient', name: [{ family: 'A' }, { family: 'B' }] };
    expect(() => compileFhirPath("name.family.startsWith('A')")(twoNames)).toThrow(
      errorOf("name.family.startsWith('A')", twoNames),
    );
    expect(runtimeFallbacks()).toBeGreaterThan(before);
  });

  it('mirrors fhirpath.js quirks: where() keeps items whose criterion is any truthy first value', () => {
    const patient = {
      resourceType: 'Patient',
      active: false,
      name: [{ use: 'old', family: 'A' }, { family: '' }, { family: 'C', period: { start: '2020' } }],
    };
    for (const expr of [
      'name.where(use).family',
      'name.where(family).family',
      "name.where('').family",
      'name.where(false).family',
      'name.where(period).family',
      'active.where($this)',
      '$this = $this',
      'Patient.name.family',
      'Practitioner.name',
      // A property of a JavaScript string (fhirpath.js reads it): handed to fhirpath.js.
      "'abc'.length",
      'name.family.length',
    ]) {
      expect(compileFhirPath(expr)({ ...patient }), expr).toEqual(slow(expr, { ...patient }));
      const fast = compileFastOnly(expr);
      expect(fast, expr).toBeDefined();
      const answer = fast?.({ ...patient });
      if (expr.endsWith('.length')) expect(answer, expr).toBeUndefined();
      else expect(answer, expr).toEqual(slow(expr, { ...patient }));
    }
  });
});

// ---------------------------------------------------------------------------------------------------------
// Equivalence with fhirpath.js on real data.

const CONFIG = join(REPO_ROOT, 'config');

function yamlFiles(dir: string): { name: string; doc: unknown }[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((name) => ({ name, doc: parse(readFileSync(join(dir, name), 'utf8')) as unknown }));
}

/** Every `rule`, `when` and `forEach` of the matrix and the policies (identity rules included). */
function shippedExpressions(): Map<string, string> {
  const found = new Map<string, string>();
  const add = (expr: unknown, where: string) => {
    if (typeof expr === 'string' && expr.trim() !== '' && !found.has(expr)) found.set(expr, where);
  };
  const walk = (value: unknown, where: string): void => {
    if (Array.isArray(value)) {
      for (const v of value) walk(v, where);
    } else if (value !== null && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) {
        if (k === 'rule' || k === 'when' || k === 'forEach') add(v, `${where}:${k}`);
        walk(v, where);
      }
    }
  };
  for (const dir of ['mappings', 'policies']) {
    for (const { name, doc } of yamlFiles(join(CONFIG, dir))) walk(doc, name);
  }
  // The example flow's withhold rules and the anonymisation profiles' expressions go through the same code.
  for (const { name, doc } of yamlFiles(join(REPO_ROOT, 'examples', 'flows'))) walk(doc, name);
  for (const { name, doc } of yamlFiles(join(CONFIG, 'anonymize'))) {
    const d = doc as {
      risk?: { quasiIdentifiers?: Record<string, unknown> };
      aggregation?: { dimensions?: Record<string, unknown> };
      rules?: { where?: unknown }[];
    };
    for (const v of Object.values(d.risk?.quasiIdentifiers ?? {})) add(v, `${name}:quasiIdentifiers`);
    for (const v of Object.values(d.aggregation?.dimensions ?? {}))
      add(typeof v === 'string' ? v : (v as { path?: unknown }).path, `${name}:dimensions`);
    for (const r of d.rules ?? []) add(r.where, `${name}:where`);
  }
  return found;
}

/** Expressions written to find the edges of the subset: empty operands, collections, types, quirks. */
const ADVERSARIAL = [
  // multi-item and empty equality
  'name.given = name.given',
  "name.family = 'X'",
  "telecom.system = 'phone'",
  "name.use != 'old'",
  'identifier.system = identifier.system',
  'address.line = address.line',
  "foo = 'x'",
  "'x' = foo",
  "foo != 'x'",
  'foo = foo',
  '{} = {}',
  'name = name',
  'name.first() = name.first()',
  'gender = gender',
  "gender = 'female' or gender = 'male'",
  'active = true',
  "active = 'true'",
  'id = id.first()',
  // three-valued logic
  'foo or true',
  'foo or false',
  'false or foo',
  'foo and false',
  'foo and true',
  'true and foo',
  'active or foo',
  'active and deceased',
  'name.exists() and name.given.exists()',
  'gender.exists() or (gender.empty() and name.exists())',
  'name.given or true',
  'name and true',
  // nested where, select, exists(criteria)
  "name.where(given.where($this.startsWith('J')).exists()).family",
  "identifier.where(type.coding.where(code = 'MR').exists()).value",
  "contact.where(name.where(use = 'official').exists())",
  "telecom.where(system = 'phone' and use = 'home').value",
  'name.select(given.first())',
  'name.select($this.family)',
  "name.given.where($this = 'John')",
  "extension.where(url.startsWith('http://hl7.org/fhir/us/core')).extension.value",
  "code.coding.exists(system = 'http://snomed.info/sct')",
  'identifier.exists(value)',
  // startsWith / endsWith on odd inputs
  "active.startsWith('t')",
  "name.startsWith('x')",
  "birthDate.startsWith('19')",
  "identifier.value.startsWith('9')",
  "multipleBirth.startsWith('1')",
  "id.endsWith('1')",
  "subject.reference.startsWith('Patient/')",
  'reference.startsWith(foo)',
  // choice types and dates
  'deceased',
  'deceased = true',
  'deceased != false',
  'value',
  'value.exists()',
  'value.unit',
  'component.value',
  'effective',
  'onset',
  'multipleBirth',
  'medication',
  'occurrence',
  'extension.value',
  'birthDate = birthDate',
  "birthDate = '1990-01-01'",
  'birthDate != false',
  'period.start = period.end',
  'effective = issued',
  'valueQuantity.value',
  'valueQuantity.value = valueQuantity.value',
  'valueQuantity = valueQuantity',
  'birthDate + gender',
  // $this, roots, resource types, nested resources
  '$this = $this',
  '$this.id',
  "name.where($this.use = 'official')",
  'Patient.name.given',
  'Practitioner.name',
  'Observation.value',
  'Resource.id',
  'contained.id',
  'contained.name',
  'entry.resource.id',
  'resourceType',
  "resourceType = 'Patient'",
  // iif, not, count, first, last, tail, join, +
  "iif(active, 'a', 'b')",
  'iif(name.exists(), name.first().family)',
  "iif(foo, 'x')",
  "iif(name, 'x', 'y')",
  "iif(gender = 'male', name.given, name.family)",
  'name.not()',
  'active.not()',
  'gender.not()',
  'foo.not()',
  'name.exists().not()',
  'name.given.count()',
  'identifier.last().value',
  'name.tail().family',
  'telecom.first()',
  "name.given.join(' ')",
  'name.given.join()',
  "name.join(',')",
  'identifier.value.join(foo)',
  "name.family + ', ' + name.given.first()",
  "id + '|' + gender",
  "name.first().family + '|' + name.first().use",
  // primitive extensions, prototype names, text
  'birthDate.extension',
  'name.given.extension.url',
  'text.status.length',
  'id.length',
  'name.length',
  'meta.tag.code',
  'extension.url',
  // canonical and Veeva shapes
  "addresses.where(use = 'home').postalCode",
  'addresses.lines.first()',
  'source.resourceType',
  "npi.startsWith('1')",
  "attributes.type = 'Account'",
  'Address_vod__r.records.where(Inactive_vod__c.exists().not() or Inactive_vod__c = false).City_vod__c',
  'IsPersonAccount = false or LastName.exists()',
  // outside the subset: fhirpath.js answers (or throws) as before
  'name.foo()',
  'name[0].given',
  '(name | contact.name).family',
  'multipleBirth = 2',
];

type Outcome = { readonly value: unknown[] } | { readonly error: string };

const reference = new Map<string, (r: object) => unknown[]>();
function slow(expr: string, resource: object): unknown[] {
  let fn = reference.get(expr);
  if (fn === undefined) {
    const compiled = compile(expr, r4, { async: false });
    fn = (r: object) => compiled(r) as unknown[];
    reference.set(expr, fn);
  }
  return fn(resource);
}

function outcome(fn: () => unknown[]): Outcome {
  try {
    return { value: fn() };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

function errorOf(expr: string, resource: object): string {
  const o = outcome(() => slow(expr, resource));
  if (!('error' in o)) throw new Error(`${expr} does not fail`);
  return o.error;
}

interface Tally {
  evaluations: number;
  fastAnswered: number;
  fastBailed: number;
  mismatches: string[];
}

const newTally = (): Tally => ({ evaluations: 0, fastAnswered: 0, fastBailed: 0, mismatches: [] });

/**
 * Compares, for each resource and expression: the fast closures alone (where they answer), the compiled
 * path with its fallback, and fhirpath.js. Every evaluation gets a shallow copy of the root, because
 * fhirpath.js marks the objects it returns (a hidden `__path__`) and reads that mark on a root.
 */
function compare(exprs: readonly string[], resources: readonly object[], label: string): Tally {
  const tally = newTally();
  const compiled = exprs.map((e) => ({ expr: e, pub: compileFhirPath(e), fast: compileFastOnly(e) }));
  for (const resource of resources) {
    // The fast closures first, on the untouched resource; 'bail' where they hand it to fhirpath.js.
    const fastResults = compiled.map(({ fast }): Outcome | 'bail' | undefined => {
      if (fast === undefined) return undefined;
      let bailed = false;
      const o = outcome(() => {
        const v = fast(resource);
        bailed = v === undefined;
        return v ?? [];
      });
      return bailed ? 'bail' : o;
    });
    compiled.forEach(({ expr, pub }, i) => {
      tally.evaluations++;
      const expected = outcome(() => slow(expr, { ...resource }));
      const actual = outcome(() => pub({ ...resource }));
      const r = resource as { resourceType?: unknown; id?: unknown };
      const id = `${label} ${String(r.resourceType ?? '(record)')}/${String(r.id ?? '?')} ${expr}`;
      if (!isDeepStrictEqual(actual, expected))
        tally.mismatches.push(
          `${id}: compiled ${JSON.stringify(actual)} ≠ fhirpath ${JSON.stringify(expected)}`,
        );
      const got = fastResults[i];
      if (got === undefined) return;
      if (got === 'bail') {
        tally.fastBailed++;
        return;
      }
      tally.fastAnswered++;
      if (!isDeepStrictEqual(got, expected))
        tally.mismatches.push(`${id}: fast ${JSON.stringify(got)} ≠ fhirpath ${JSON.stringify(expected)}`);
    });
  }
  return tally;
}

function expectNoMismatch(tally: Tally): void {
  expect(tally.mismatches.slice(0, 20)).toEqual([]);
  expect(tally.mismatches.length).toBe(0);
}

/** CRM writes as a SOQL query returns them (Account with its Address_vod__r), as in the round-trip tests. */
function asQueried(
  writes: readonly { object: string; externalIdField: string; externalId: string; fields: object }[],
): JsonObject | undefined {
  const [parent, ...children] = writes;
  if (parent === undefined) return undefined;
  const fields = parent.fields as Record<string, unknown>;
  const record: Record<string, unknown> = {
    attributes: { type: parent.object },
    [parent.externalIdField]: parent.externalId,
    ...fields,
  };
  if (parent.object === 'Account') record.IsPersonAccount = 'LastName' in fields;
  if (children.length > 0)
    record.Address_vod__r = {
      records: children.map((c, i) => ({
        ...c.fields,
        ...(i % 2 === 1 ? { Inactive_vod__c: i % 4 === 1 } : {}),
      })),
    };
  return JSON.parse(JSON.stringify(record)) as JsonObject;
}

describe('fast path ≡ fhirpath.js on the shipped expressions and the shared data', () => {
  const shipped = shippedExpressions();
  const exprs = [...shipped.keys()];
  const fhir: JsonObject[] = [];
  const synthea: JsonObject[] = [];
  const canonical: object[] = [];
  const veeva: JsonObject[] = [];

  beforeAll(async () => {
    const shared = sharedDataDir();
    const dirs = shared
      ? [
          join(shared, 'fhir-r4-examples'),
          join(shared, 'synthea', 'directory'),
          join(shared, 'synthea', 'directory-v3'),
          join(shared, 'epic', 'samples'),
        ]
      : [];
    dirs.push(join(SAMPLE_DATA_DIR, 'directory'), join(SAMPLE_DATA_DIR, 'consents'));
    for (const file of await listResourceFiles(dirs)) fhir.push(...(await readResources(file)));
    const bundles = shared ? join(shared, 'synthea', 'bundles') : join(SAMPLE_DATA_DIR, 'synthea');
    for (const file of await listResourceFiles([bundles])) synthea.push(...(await readResources(file)));

    // What the matrix itself feeds FHIRPath: canonical records, CRM records, FHIR it writes.
    const engine = createMatrixEngine();
    const toCanonical: AnyCanonicalRecord[] = [];
    for (const resource of [...fhir, ...synthea]) {
      const type = String(resource.resourceType);
      if (
        ![
          'Patient',
          'Practitioner',
          'Organization',
          'PractitionerRole',
          'Encounter',
          'Appointment',
          'ServiceRequest',
          'Consent',
        ].includes(type)
      )
        continue;
      const out = engine.fhirToCanonical(resource, epicContext());
      if (out.ok) toCanonical.push(out.value);
      if (type === 'Patient') {
        const person = engine.fhirToCanonical(resource, epicContext(), 'Person');
        if (person.ok) toCanonical.push(person.value);
      }
    }
    for (const record of toCanonical) {
      canonical.push(JSON.parse(JSON.stringify(record)) as object);
      const writes = engine.canonicalToVeeva(record, veevaContext());
      if (writes.ok) {
        const queried = asQueried(writes.value.writes);
        if (queried) veeva.push(queried);
        for (const w of writes.value.writes)
          veeva.push({ attributes: { type: w.object }, ...(w.fields as JsonObject) });
      }
      const back = engine.canonicalToFhir(record, epicContext());
      if (back.ok) fhir.push(JSON.parse(JSON.stringify(back.value.resource)) as JsonObject);
    }
    if (shared) {
      const sample = JSON.parse(
        readFileSync(
          join(shared, 'veeva', 'samples', 'account-hcp-create-duplicate-error.azure-docs.json'),
          'utf8',
        ),
      ) as { sobject: string; record: JsonObject };
      veeva.push({ attributes: { type: sample.sobject }, ...sample.record });
    }
    for (const record of veeva) {
      const out = engine.veevaToCanonical(record, veevaContext());
      if (out.ok) canonical.push(JSON.parse(JSON.stringify(out.value)) as object);
    }
  }, 120_000);

  it('finds the shipped expressions, and most of them take the fast path', () => {
    expect(exprs.length).toBeGreaterThan(60);
    const slowOnes = exprs.filter((e) => !isFastPath(e));
    // Known: the union operator `|` (ServiceRequest requester | performer) is left to fhirpath.js.
    expect(slowOnes.length / exprs.length).toBeLessThan(0.05);
    for (const e of slowOnes)
      expect(explainFhirPath(e), e).toMatchObject({ fast: false, reason: expect.any(String) });
    for (const e of ['id', 'deceased.exists() and deceased != false', 'active = false'])
      expect(isFastPath(e), e).toBe(true);
  });

  it('every shipped expression on every Synthea resource (13,000+ resources, 60 patients)', () => {
    expect(synthea.length).toBeGreaterThan(1000);
    const tally = compare(exprs, synthea, 'synthea');
    expectNoMismatch(tally);
    // The fast closures answer nearly everything themselves (dates and extensions are rare).
    expect(tally.fastAnswered / (tally.fastAnswered + tally.fastBailed)).toBeGreaterThan(0.97);
  }, 180_000);

  it('every shipped expression on the FHIR R4 examples, directories, Epic samples and matrix output', () => {
    expect(fhir.length).toBeGreaterThan(300);
    expectNoMismatch(compare(exprs, fhir, 'fhir'));
  }, 120_000);

  it('every shipped expression on canonical records and CRM records the matrix produces', () => {
    expect(canonical.length).toBeGreaterThan(200);
    expect(veeva.length).toBeGreaterThan(200);
    const tally = compare(exprs, [...canonical, ...veeva], 'matrix');
    expectNoMismatch(tally);
    expect(tally.fastAnswered / (tally.fastAnswered + tally.fastBailed)).toBeGreaterThan(0.97);
  }, 120_000);

  it('adversarial expressions on the FHIR examples, matrix records and a sample of Synthea', () => {
    // Every resource type of Synthea, every Patient, and the records the matrix reads and writes.
    const sample = synthea.filter((r, i) => i % 25 === 0 || r.resourceType === 'Patient');
    const records = [...canonical, ...veeva].filter((_, i) => i % 5 === 0);
    const tally = compare(ADVERSARIAL, [...fhir, ...sample, ...records], 'adversarial');
    expectNoMismatch(tally);
    expect(tally.fastAnswered).toBeGreaterThan(tally.evaluations / 2);
  }, 180_000);
});

describe('fast path ≡ fhirpath.js on random JSON', () => {
  const key = fc.constantFrom(
    'name',
    'given',
    'family',
    'use',
    'system',
    'value',
    'code',
    'coding',
    'type',
    'text',
    'active',
    'deceasedBoolean',
    'deceasedDateTime',
    'reference',
    'id',
    'identifier',
    'telecom',
    'extension',
    'url',
    'valueString',
    'valueBoolean',
    'valueDateTime',
    '_given',
    'birthDate',
    'resourceType',
    'length',
  );
  const primitive = fc.oneof(
    fc.constantFrom(
      'old',
      'official',
      'phone',
      'Patient/1',
      'Practitioner/2',
      '2020-01-01',
      '2020',
      'MR',
      '',
      'x',
    ),
    fc.constantFrom('Patient', 'Observation'),
    fc.boolean(),
    fc.integer({ min: -3, max: 3 }),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.constant(null),
  );
  const { node } = fc.letrec((tie) => ({
    node: fc.oneof({ depthSize: 'small', maxDepth: 4 }, primitive, primitive, tie('array'), tie('object')),
    array: fc.array(tie('node'), { maxLength: 3 }),
    object: fc.dictionary(key, tie('node'), { maxKeys: 5 }),
  }));
  const root = fc
    .tuple(
      fc.constantFrom(undefined, 'Patient', 'Practitioner', 'Observation', 'Extension'),
      fc.dictionary(key, node, { maxKeys: 7 }),
    )
    .map(([resourceType, body]) => {
      const { resourceType: _ignored, ...rest } = body as Record<string, unknown>;
      return (resourceType === undefined ? rest : { resourceType, ...rest }) as object;
    });
  const EXPRESSIONS = [
    'name.given',
    "name.where(use != 'old').family",
    "identifier.where(system = 'phone' or type.text = 'MR').value",
    'deceased',
    'deceased.exists() and deceased != false',
    'active = false',
    "name.given.join(' ')",
    'iif(name.exists(), name.first().family, text)',
    'extension.value',
    "telecom.where(value.startsWith('Patient/'))",
    '$this.id',
    "name.select(family + '|' + use)",
    "coding.code = 'MR'",
    'value = value',
    'text.not()',
    'type.coding.count()',
    'name.tail().given.first()',
    'name.where(use).family.length',
    'birthDate = birthDate',
    'active or name.exists()',
  ];
  const fast = EXPRESSIONS.map((e) => ({ e, pub: compileFhirPath(e), only: compileFastOnly(e) }));

  it('gives the same answer or the same error', () => {
    let answered = 0;
    let total = 0;
    fc.assert(
      fc.property(root, (resource) => {
        for (const { e, pub, only } of fast) {
          total++;
          const expected = outcome(() => slow(e, { ...resource }));
          expect(
            outcome(() => pub({ ...resource })),
            e,
          ).toEqual(expected);
          const got = only?.(resource);
          if (got !== undefined) {
            answered++;
            expect({ value: got }, e).toEqual(expected);
          }
        }
      }),
      { numRuns: 400 },
    );
    // The property exercises the fast closures, not only the fallback.
    expect(answered / total).toBeGreaterThan(0.5);
  });
});
