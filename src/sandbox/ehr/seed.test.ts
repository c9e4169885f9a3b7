import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { Bundle, Encounter, Resource } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSluiceError, type SluiceError } from '../../core/errors/index.ts';
import { sharedDataDir } from '../../testkit/data.ts';
import { loadFhirDefinitions } from './definitions.ts';
import { startEhrSandbox } from './index.ts';
import { SandboxRepository } from './repository.ts';
import { seedRepository } from './seed.ts';
import { SAMPLE_DIRECTORY_DIR, syntheaBundleDir, syntheaBundleFiles } from './testing.ts';

const defs = loadFhirDefinitions();
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-ehr-seed-test-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function seedError(paths: string[]): Promise<SluiceError> {
  const repo = new SandboxRepository();
  const error = await seedRepository(repo, paths, defs.isResourceType).then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!isSluiceError(error)) throw new Error(`expected a SluiceError, got ${String(error)}`);
  return error;
}

function transaction(entries: { fullUrl?: string; resource: Record<string, unknown> }[]): string {
  return JSON.stringify({
    resourceType: 'Bundle',
    type: 'transaction',
    entry: entries.map((e) => ({ ...e, request: { method: 'POST', url: e.resource.resourceType } })),
  });
}

describe('seeding Synthea transaction bundles', () => {
  const repo = new SandboxRepository();
  let expected: Map<string, number>;
  let report: Awaited<ReturnType<typeof seedRepository>>;

  beforeAll(async () => {
    // What the bundles hold, counted independently of the seeder: unique Type/id per type.
    const unique = new Set<string>();
    expected = new Map();
    for (const file of syntheaBundleFiles()) {
      const bundle = JSON.parse(gunzipSync(await readFile(file)).toString('utf8')) as Bundle;
      for (const entry of bundle.entry ?? []) {
        const key = `${entry.resource?.resourceType}/${entry.resource?.id}`;
        if (unique.has(key)) continue;
        unique.add(key);
        const type = entry.resource?.resourceType as string;
        expected.set(type, (expected.get(type) ?? 0) + 1);
      }
    }
    report = await seedRepository(repo, [syntheaBundleDir()], defs.isResourceType);
  });

  it('loads every resource once, in a few seconds', () => {
    const stats = repo.stats();
    expect(stats.byType).toEqual(Object.fromEntries([...expected].sort(([a], [b]) => a.localeCompare(b))));
    expect(report.created).toBe(stats.resources);
    expect(report.updated).toBe(0);
    // Practitioners and Organizations recur across bundles with the same content.
    expect(report.unchanged).toBe(report.resources - report.created);
    expect(report.files).toBe(syntheaBundleFiles().length);
    expect(report.durationMs).toBeLessThan(10_000);
  });

  it('keeps the bundle ids and rewrites urn:uuid references to Type/id', async () => {
    const encounters = await repo.searchResources<Encounter>({ resourceType: 'Encounter' });
    expect(encounters.length).toBeGreaterThan(0);
    for (const encounter of encounters) {
      expect(encounter.subject?.reference).toMatch(/^Patient\/[0-9a-f-]{36}$/);
      await expect(repo.readReference(encounter.subject as never)).resolves.toMatchObject({
        resourceType: 'Patient',
      });
      const provider = encounter.serviceProvider?.reference;
      if (provider) expect(provider).toMatch(/^Organization\//);
    }
    for (const type of Object.keys(repo.stats().byType)) {
      const resources = await repo.searchResources({ resourceType: type as 'Patient' });
      expect(JSON.stringify(resources)).not.toContain('"reference":"urn:uuid:');
    }
  });

  it('seeds a recurring Practitioner as one resource with one version', async () => {
    const practitioners = await repo.searchResources({ resourceType: 'Practitioner' });
    expect(practitioners.every((p) => p.meta?.versionId === '1')).toBe(true);
  });
});

describe('seeding other shapes', () => {
  it('reads the provider directory NDJSON.gz', async () => {
    const repo = new SandboxRepository();
    const report = await seedRepository(repo, [SAMPLE_DIRECTORY_DIR], defs.isResourceType);
    expect(repo.stats().byType).toEqual({ Organization: 271, Practitioner: 271 });
    expect(report.files).toBe(2);
  });

  it('reads official FHIR R4 examples (single-resource JSON files)', async () => {
    const examples = sharedDataDir() && join(sharedDataDir() as string, 'fhir-r4-examples');
    if (!examples) return;
    const files = (await readdir(examples))
      .filter((n) => /^(Patient|Consent|Practitioner|Organization|Encounter)-.*\.json$/.test(n))
      .map((n) => join(examples, n));
    const repo = new SandboxRepository();
    const report = await seedRepository(repo, files, defs.isResourceType);
    expect(report.resources).toBe(files.length);
    expect(await repo.readResource('Patient', 'example')).toMatchObject({
      resourceType: 'Patient',
      id: 'example',
    });
    expect(repo.stats().byType.Consent).toBeGreaterThan(5);
  });

  it('gives an entry without id the uuid of its fullUrl, and resolves references to it', async () => {
    const uuid = randomUUID();
    const file = join(dir, 'no-ids.json');
    await writeFile(
      file,
      transaction([
        { fullUrl: `urn:uuid:${uuid}`, resource: { resourceType: 'Patient', gender: 'male' } },
        {
          fullUrl: `urn:uuid:${randomUUID()}`,
          resource: {
            resourceType: 'Observation',
            status: 'final',
            code: {},
            subject: { reference: `urn:uuid:${uuid}` },
          },
        },
      ]),
    );
    const repo = new SandboxRepository();
    await seedRepository(repo, [file], defs.isResourceType);
    expect(await repo.readResource('Patient', uuid)).toMatchObject({ gender: 'male' });
    const [observation] = await repo.searchResources({ resourceType: 'Observation' });
    expect((observation as { subject?: { reference?: string } }).subject?.reference).toBe(`Patient/${uuid}`);
  });

  it('updates a recurring resource only when its content differs', async () => {
    const practitioner = { resourceType: 'Practitioner', id: 'dr-1', name: [{ family: 'Alpha' }] };
    await writeFile(join(dir, 'a.json'), transaction([{ resource: practitioner }]));
    await writeFile(join(dir, 'b.json'), transaction([{ resource: practitioner }]));
    await writeFile(
      join(dir, 'c.json'),
      transaction([{ resource: { ...practitioner, name: [{ family: 'Beta' }] } }]),
    );
    const repo = new SandboxRepository();
    const report = await seedRepository(
      repo,
      ['a.json', 'b.json', 'c.json'].map((n) => join(dir, n)),
      defs.isResourceType,
    );
    expect(report).toMatchObject({ created: 1, unchanged: 1, updated: 1 });
    const current = await repo.readResource<Resource & { name: { family: string }[] }>(
      'Practitioner',
      'dr-1',
    );
    expect(current.meta?.versionId).toBe('2');
    expect(current.name[0]?.family).toBe('Beta');
    expect((await repo.readHistory('Practitioner', 'dr-1')).entry).toHaveLength(2);
  });
});

describe('seeding errors', () => {
  it('names the file of a truncated .json.gz', async () => {
    const original = await readFile(syntheaBundleFiles(1)[0] as string);
    const file = join(dir, 'truncated.json.gz');
    await writeFile(file, original.subarray(0, Math.floor(original.length / 2)));
    const error = await seedError([file]);
    expect(error.code).toBe('SANDBOX_SEED_INVALID');
    expect(error.message).toContain(file);
  });

  it('names file and line of a broken NDJSON line, without its content', async () => {
    const good = JSON.stringify({ resourceType: 'Patient', id: 'p1' });
    const file = join(dir, 'broken.ndjson');
    await writeFile(
      file,
      `${good}\n${JSON.stringify({ resourceType: 'Patient', id: 'p2' })}\n{"resourceType":"Patient","name":[{"family":"Quuxington"\n`,
    );
    const error = await seedError([file]);
    expect(error.code).toBe('SANDBOX_SEED_INVALID');
    expect(error.message).toContain(`${file} line 3`);
    expect(error.message).not.toContain('Quuxington');
    expect(JSON.stringify(error.toJSON())).not.toContain('Quuxington');
  });

  it('names the line where a truncated .ndjson.gz ends', async () => {
    const lines = Array.from({ length: 400 }, (_, i) =>
      JSON.stringify({ resourceType: 'Patient', id: `p${i}` }),
    );
    const gz = gzipSync(`${lines.join('\n')}\n`);
    const file = join(dir, 'cut.ndjson.gz');
    await writeFile(file, gz.subarray(0, gz.length - 20));
    const error = await seedError([file]);
    expect(error.message).toMatch(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} line \\d+`));
  });

  it('lists every problem at once: bundle entries, unknown types, bad ids, missing paths', async () => {
    const bundle = join(dir, 'bad-entries.json');
    await writeFile(
      bundle,
      JSON.stringify({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { resource: { resourceType: 'Patient', id: 'fine' } },
          { fullUrl: 'urn:uuid:no-resource' },
          { resource: { resourceType: 'Pateint', id: 'typo' } },
          { resource: { resourceType: 'Patient', id: 'has/slash' } },
        ],
      }),
    );
    const notJson = join(dir, 'not-json.json');
    await writeFile(notJson, '{ this is not json');
    const error = await seedError([bundle, notJson]);
    expect(error.message).toContain('4 problem(s)');
    expect(error.message).toContain(`${bundle} entry 1: bundle entry without a resource`);
    expect(error.message).toContain(`${bundle} entry 2: unknown resource type "Pateint"`);
    expect(error.message).toContain(`${bundle} entry 3: resource id is not a valid FHIR id`);
    expect(error.message).toContain(`${notJson}: not valid JSON`);

    const missing = await seedError([join(dir, 'does-not-exist')]);
    expect(missing.code).toBe('SANDBOX_SEED_INVALID');
    expect(missing.message).toContain('does-not-exist');
  });

  it('makes startEhrSandbox fail with SANDBOX_SEED_INVALID', async () => {
    const file = join(dir, 'one-bad-line.ndjson');
    await writeFile(file, '{"resourceType":"Patient","id":"a"}\nnot json\n');
    await expect(startEhrSandbox({ seed: [file] })).rejects.toMatchObject({
      code: 'SANDBOX_SEED_INVALID',
      message: expect.stringContaining(`${file} line 2`),
    });
  });
});
