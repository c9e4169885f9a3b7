import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PROFILE_DIR } from '../../core/anonymize/profile.ts';
import { bundleResources, readBundle } from '../../core/anonymize/testing.ts';
import type { JsonObject } from '../../core/fhir/resource.ts';
import { FIXTURES_DIR } from '../../testkit/data.ts';
import { type CliResult, runCommand } from '../testing.ts';
import { registerAnonymize, stdinItems } from './anonymize.ts';

const BUNDLES = join(FIXTURES_DIR, 'shared-data', 'synthea', 'bundles');
const FIRST = join(BUNDLES, readdirSync(BUNDLES).sort()[0] as string);
const KEY_A = 'a1'.repeat(32);
const KEY_B = 'b2'.repeat(32);

/** Runs `sluice anonymize …` in-process, capturing stdout and stderr. */
const anonymizeCli = (args: readonly string[], env: Record<string, string> = {}) =>
  runCommand(registerAnonymize, ['anonymize', ...args], env);

function lastJson(result: CliResult): Record<string, unknown> {
  return JSON.parse(result.stdout.at(-1) as string) as Record<string, unknown>;
}

function ndjson(file: string): JsonObject[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as JsonObject);
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-anon-cli-'));
  delete process.env.SLUICE_PSEUDONYM_KEY;
  delete process.env.SLUICE_HASH_SALT;
});
afterEach(() => {
  process.exitCode = 0;
});

describe('sluice anonymize', () => {
  it('applies a profile by name and writes NDJSON per input, the audit summary as the last JSON line', async () => {
    const result = await anonymizeCli(['--profile', 'safe-harbor', '--out', dir, '--json', FIRST]);
    expect(result.code).toBe(0);
    const summary = lastJson(result);
    expect(summary.profile).toMatchObject({ name: 'safe-harbor', version: 1 });
    expect(summary.restrictedZip3).toEqual(['hhs-2000']);
    const [input] = summary.inputs as { output: string; resources: number; released: number }[];
    const source = bundleResources(readBundle(FIRST));
    expect(input?.resources).toBe(source.length);
    const released = ndjson(input?.output as string);
    expect(released).toHaveLength(input?.released as number);
    expect(readdirSync(dir)).toEqual([input?.output.split('/').at(-1)]);
    // Audit rows: path, class, method and counts — and no source value anywhere in the summary.
    const audit = summary.audit as { path: string; class: string; method: string; count: number }[];
    expect(audit).toContainEqual(
      expect.objectContaining({ path: 'Patient.name', class: 'direct', method: 'redact', count: 1 }),
    );
    expect(audit).toContainEqual(expect.objectContaining({ path: 'Patient.address', method: 'generalize' }));
    const patient = source.find((r) => r.resourceType === 'Patient') as JsonObject;
    const summaryText = JSON.stringify(summary);
    expect(summaryText).not.toContain(String(patient.id));
    expect(summaryText).not.toContain(String(patient.birthDate));
    expect(summaryText).not.toContain(JSON.stringify((patient.name as JsonObject[])[0]?.family));
  });

  it('accepts a profile file, and prints the text summary on stderr with resources on stdout', async () => {
    const file = join(dir, 'custom.yaml');
    writeFileSync(
      file,
      [
        'id: custom',
        'destination: reviewers',
        'purpose: review',
        'resourceTypes: [Patient]',
        'defaults: { direct: redact, quasi: redact, sensitive: redact, other: redact }',
        'rules:',
        '  - { path: Patient.gender, method: keep }',
      ].join('\n'),
    );
    const result = await anonymizeCli(['--profile', file, FIRST]);
    expect(result.code).toBe(0);
    expect(result.stdout).toHaveLength(1);
    const patient = JSON.parse(result.stdout[0] as string) as JsonObject;
    expect(Object.keys(patient).sort()).toEqual(['gender', 'meta', 'resourceType']);
    expect(result.stderr).toMatch(/resources read, 1 released/);
    expect(result.stderr).toMatch(/Patient\.name {2}direct {2}redact/);
  });

  it('rejects an invalid profile listing every error, exit 2, and writes nothing', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      [
        'id: bad',
        'destination: x',
        'purpose: y',
        'rules:',
        '  - { path: Patient.nmae, method: redact }',
        '  - { path: Patient.birthDate, method: generalize, params: { granularity: decade } }',
        '  - { path: Patient.gender, method: shuffle }',
      ].join('\n'),
    );
    const out = join(dir, 'out');
    const result = await anonymizeCli(['--profile', file, '--out', out, '--json', FIRST]);
    expect(result.code).toBe(2);
    const { error } = lastJson(result) as { error: { code: string; details: { problems: string[] } } };
    expect(error.code).toBe('ANON_RULES_INVALID');
    expect(error.details.problems.map((p) => p.split(':')[0])).toEqual(
      expect.arrayContaining([
        'rules[0].path',
        'rules[1].params.granularity',
        'rules[2].method',
        'restrictedZip3',
      ]),
    );
    expect(result.stderr).toContain('error ANON_RULES_INVALID');
    expect(() => readdirSync(out)).toThrow();
  });

  it('refuses an unknown profile name, and a missing key, each with its code and exit 2', async () => {
    const unknown = await anonymizeCli(['--profile', 'hipaa', FIRST]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('ANON_PROFILE_NOT_FOUND');
    const keyless = await anonymizeCli(['--profile', 'analytics', FIRST]);
    expect(keyless.code).toBe(2);
    expect(keyless.stderr).toContain('ANON_CONTEXT_INVALID');
    expect(keyless.stderr).toContain('SLUICE_PSEUDONYM_KEY');
    const short = await anonymizeCli(['--profile', 'analytics', FIRST], { SLUICE_PSEUDONYM_KEY: 'abcd' });
    expect(short.code).toBe(2);
    expect(short.stderr).toContain('CFG_KEY_INVALID');
  });

  it('takes no key on the command line', async () => {
    await expect(anonymizeCli(['--profile', 'analytics', '--key', KEY_A, FIRST])).rejects.toMatchObject({
      code: 'commander.unknownOption',
    });
  });

  it('fails non-JSON input with ANON_INPUT_INVALID naming the line, exit 1, and leaves no partial output', async () => {
    const text = join(dir, 'notes.txt');
    writeFileSync(text, 'Patient Jane Doe, born 1970-01-02\n');
    const out = join(dir, 'out');
    const result = await anonymizeCli(['--profile', 'safe-harbor', '--out', out, '--json', text]);
    expect(result.code).toBe(1);
    const { error } = lastJson(result) as { error: { code: string; message: string } };
    expect(error.code).toBe('ANON_INPUT_INVALID');
    expect(error.message).not.toContain('Jane');
    expect(readdirSync(out)).toEqual([]);
    const lines = join(dir, 'bad.ndjson');
    writeFileSync(lines, '{"resourceType":"Patient","id":"a"}\n{oops\n');
    const bad = await anonymizeCli(['--profile', 'safe-harbor', lines]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/ANON_INPUT_INVALID: .*bad\.ndjson line 2/);
  });

  it('reads NDJSON and .gz, and stdin as one JSON document, NDJSON or gzip', () => {
    const a = { resourceType: 'Patient', id: 'a' };
    const b = { resourceType: 'Patient', id: 'b' };
    const resources = (raw: Buffer) =>
      [...stdinItems(raw)].map((i) => (i.kind === 'resource' ? i.resource.id : `error ${i.message}`));
    expect(resources(Buffer.from(JSON.stringify(a)))).toEqual(['a']);
    expect(resources(Buffer.from(`${JSON.stringify(a)}\n\n${JSON.stringify(b)}\n`))).toEqual(['a', 'b']);
    expect(resources(gzipSync(`${JSON.stringify(a)}\n${JSON.stringify(b)}`))).toEqual(['a', 'b']);
    expect(resources(Buffer.from('hello'))).toEqual(['error not valid JSON: syntax error']);
    expect(resources(Buffer.from(''))).toEqual(['error empty input']);
  });
});

describe('pseudonyms through the CLI (analytics profile)', () => {
  /** Splits a Synthea bundle into per-type NDJSON files with literal `Type/id` references. */
  function splitBundle(): { patientFile: string; obsFile: string; patient: JsonObject } {
    const source = bundleResources(readBundle(FIRST));
    const byUrn = new Map(
      source.map((r) => [`urn:uuid:${String(r.id)}`, `${String(r.resourceType)}/${String(r.id)}`]),
    );
    const literal = (r: JsonObject) =>
      JSON.parse(
        JSON.stringify(r).replace(/"urn:uuid:[0-9a-f-]+"/g, (m) =>
          JSON.stringify(byUrn.get(JSON.parse(m)) ?? m),
        ),
      ) as JsonObject;
    const patient = source.find((r) => r.resourceType === 'Patient') as JsonObject;
    const observations = source.filter((r) => r.resourceType === 'Observation').map(literal);
    const patientFile = join(dir, 'patients.ndjson');
    const obsFile = join(dir, 'observations.ndjson.gz');
    writeFileSync(patientFile, `${JSON.stringify(patient)}\n`);
    writeFileSync(obsFile, gzipSync(observations.map((o) => JSON.stringify(o)).join('\n')));
    return { patientFile, obsFile, patient };
  }

  it('keeps references resolving across files, deterministic under one key and different under another', async () => {
    const { patientFile, obsFile, patient } = splitBundle();
    const run = async (key: string, out: string) => {
      const result = await anonymizeCli(
        ['--profile', 'analytics', '--out', out, '--json', patientFile, obsFile],
        {
          SLUICE_PSEUDONYM_KEY: key,
        },
      );
      expect(result.code).toBe(0);
      return {
        patients: ndjson(join(out, 'patients.ndjson')),
        observations: ndjson(join(out, 'observations.ndjson')),
      };
    };
    const first = await run(KEY_A, join(dir, 'a1'));
    const again = await run(KEY_A, join(dir, 'a2'));
    const other = await run(KEY_B, join(dir, 'b'));
    const pid = first.patients[0]?.id as string;
    expect(pid).toMatch(/^p[a-z2-7]{32}$/);
    expect(pid).not.toBe(patient.id);
    // Every observation in the other file points at the released patient.
    expect(first.observations.length).toBeGreaterThan(5);
    for (const o of first.observations) expect((o.subject as JsonObject).reference).toBe(`Patient/${pid}`);
    // Same key, same output; another key, other pseudonyms for every id.
    expect(again).toEqual(first);
    expect(other.patients[0]?.id).not.toBe(pid);
    const ids = new Set(first.observations.map((o) => o.id));
    for (const o of other.observations) expect(ids.has(o.id)).toBe(false);
    for (const o of other.observations) {
      expect((o.subject as JsonObject).reference).toBe(`Patient/${String(other.patients[0]?.id)}`);
    }
  });

  it('reports the release risk and the suppressed aggregate tables of the profile', async () => {
    const inputs = readdirSync(BUNDLES)
      .sort()
      .slice(0, 12)
      .map((f) => join(BUNDLES, f));
    const result = await anonymizeCli(
      ['--profile', 'analytics', '--out', dir, '--json', '--as-of', '2025-01-01', ...inputs],
      {
        SLUICE_PSEUDONYM_KEY: KEY_A,
      },
    );
    expect(result.code).toBe(0);
    const summary = lastJson(result) as {
      risk: { records: number; k: number; hold: boolean };
      aggregates: { kind: string; cells?: (number | null)[][]; total: number | null }[];
    };
    expect(summary.risk.records).toBe(12);
    expect(summary.risk.k).toBe(1);
    expect(summary.risk.hold).toBe(true);
    // 12 patients in cells of k = 11: at most one cell of the decade × gender table can be shown.
    const table = summary.aggregates[0];
    expect(table?.kind).toBe('two-way');
    expect(table?.cells?.flat().filter((v) => v !== null && v > 0 && v < 11)).toEqual([]);
    expect(readFileSync(join(PROFILE_DIR, 'analytics.yaml'), 'utf8')).toContain('aggregation:');
  });
});
