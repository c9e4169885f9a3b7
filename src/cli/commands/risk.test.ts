import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_FLOW, DEMO_SEED } from '../../demo/run-demo.ts';
import { type EhrSandbox, startEhrSandbox } from '../../sandbox/ehr/index.ts';
import { runCommand } from '../testing.ts';
import { registerRisk } from './risk.ts';

/**
 * `sluice risk` over the example flow against a seeded EHR sandbox: the figures are those of the
 * Patient_Profile__c records the flow would send (consented, living patients), computed without sending.
 */

interface Figures {
  records: number;
  patientsRead: number;
  k: number;
  classes: number;
  uniques: number;
  prosecutor: { max: number; average: number };
  recordsAtRisk: number;
  classSizes: [number, number][];
  l: Record<string, number>;
  violations: { threshold: string; limit: number; actual: number }[];
  pass: boolean;
  quasiIdentifiers: string[];
}

let ehr: EhrSandbox;
let env: Record<string, string>;

beforeAll(async () => {
  ehr = await startEhrSandbox({ seed: DEMO_SEED });
  env = {
    SLUICE_EHR_URL: ehr.url,
    // Never contacted: `risk` sends nothing.
    SLUICE_CRM_URL: 'http://127.0.0.1:9',
    SLUICE_PSEUDONYM_KEY: randomBytes(32).toString('base64'),
    SLUICE_STATE_DIR: mkdtempSync(join(tmpdir(), 'sluice-risk-')),
  };
}, 60_000);
afterAll(async () => {
  await ehr.close();
  process.exitCode = 0;
});

const riskCli = (args: readonly string[]) => runCommand(registerRisk, ['risk', ...args], env);

describe('sluice risk', () => {
  it('reports k, prosecutor risk and records at risk of the outgoing profiles, and fails the defaults', async () => {
    const result = await riskCli([DEMO_FLOW, '--json']);
    expect(result.code).toBe(1);
    const f = JSON.parse(result.stdout.at(-1) as string) as Figures;
    expect(f.quasiIdentifiers).toEqual(['Birth_Year__c', 'Zip3__c', 'Gender__c']);
    expect(f.patientsRead).toBe(9);
    // Deceased and unconsented patients send nothing, so fewer profiles than patients read.
    expect(f.records).toBeGreaterThan(0);
    expect(f.records).toBeLessThan(f.patientsRead);
    // The figures agree with each other: k is the smallest class, max risk 1/k, average classes/records.
    const sizes = f.classSizes.flatMap(([size, n]) => Array<number>(n).fill(size));
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(f.records);
    expect(f.k).toBe(Math.min(...sizes));
    expect(f.classes).toBe(sizes.length);
    expect(f.prosecutor.max).toBeCloseTo(1 / f.k, 4);
    expect(f.prosecutor.average).toBeCloseTo(f.classes / f.records, 4);
    expect(f.recordsAtRisk).toBe(sizes.filter((s) => 1 / s > 0.09).reduce((a, b) => a + b, 0));
    expect(f.pass).toBe(false);
    expect(f.violations.map((v) => v.threshold)).toEqual(['minK', 'maxProsecutorRisk']);
    expect(f.violations[0]).toEqual({ threshold: 'minK', limit: 11, actual: f.k });
  }, 60_000);

  it('passes with thresholds the release meets, and names failures in text mode', async () => {
    const pass = await riskCli([DEMO_FLOW, '--json', '--k', '1', '--max-risk', '1']);
    expect(pass.code).toBe(0);
    expect(JSON.parse(pass.stdout.at(-1) as string)).toMatchObject({ pass: true, violations: [] });
    const text = await riskCli([DEMO_FLOW, '--k', '2']);
    expect(text.code).toBe(1);
    const joined = text.stdout.join('\n');
    expect(joined).toMatch(/k-anonymity: \d+/);
    expect(joined).toMatch(/prosecutor risk: max [\d.]+, average [\d.]+/);
    expect(joined).toContain('FAILED minK: limit 2');
  }, 60_000);

  it('measures distinct l-diversity for a declared sensitive field', async () => {
    const result = await riskCli([
      DEMO_FLOW,
      '--json',
      '--k',
      '1',
      '--max-risk',
      '1',
      '--sensitive',
      'Source_System__c',
    ]);
    const f = JSON.parse(result.stdout.at(-1) as string) as Figures;
    // Every profile comes from the same source system: one distinct value per class.
    expect(f.l).toEqual({ Source_System__c: 1 });
  }, 60_000);

  it('refuses bad thresholds as usage errors and a broken flow with its coded error', async () => {
    await expect(riskCli([DEMO_FLOW, '--k', '0'])).rejects.toMatchObject({
      code: 'commander.invalidArgument',
    });
    await expect(riskCli([DEMO_FLOW, '--max-risk', '2'])).rejects.toMatchObject({
      code: 'commander.invalidArgument',
    });
    const missing = await riskCli([join(tmpdir(), 'no-such-flow.yaml'), '--json']);
    expect(missing.code).toBe(2);
    expect(JSON.parse(missing.stdout.at(-1) as string).error.code).toBe('CFG_FLOW_UNREADABLE');
  }, 60_000);
});
