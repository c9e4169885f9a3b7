import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Organization } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CrmSandbox, startCrmSandbox } from '../../src/sandbox/crm/index.ts';
import { type EhrSandbox, startEhrSandbox } from '../../src/sandbox/ehr/index.ts';
import { REPO_ROOT, SAMPLE_DATA_DIR } from '../../src/testkit/data.ts';
import { exampleFlowText } from '../../src/testkit/example-flow.ts';
import { runSluice, SLUICE_BIN } from '../../src/testkit/sluice-process.ts';

// `sluice run` in loop mode, as its own process, every second against the sandboxes: cycles that find
// nothing to do are neither printed as text nor recorded in the audit trail or the run history; the
// cycle that carries a change is, whole.

/** A running `sluice run` loop: its stdout lines as they come, and a way to stop it. */
function startLoop(args: readonly string[], env: Record<string, string>) {
  const child: ChildProcess = spawn(process.execPath, [SLUICE_BIN, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let stderr = '';
  let buffered = '';
  child.stdout?.on('data', (d: Buffer) => {
    buffered += d;
    const parts = buffered.split('\n');
    buffered = parts.pop() ?? '';
    lines.push(...parts);
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  return {
    lines,
    stderr: () => stderr,
    async until(check: () => boolean, what: string): Promise<void> {
      const deadline = Date.now() + 60_000;
      while (!check()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${stderr.slice(-500)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop(): Promise<number | null> {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

const json = (line: string): Record<string, unknown> | undefined => {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
};

describe('sluice run in loop mode', () => {
  let ehr: EhrSandbox;
  let crm: CrmSandbox;
  let dir: string;
  let flowFile: string;
  let env: Record<string, string>;
  beforeAll(async () => {
    ehr = await startEhrSandbox({ seed: [join(SAMPLE_DATA_DIR, 'directory')] });
    crm = await startCrmSandbox();
    dir = mkdtempSync(join(tmpdir(), 'sluice-loop-'));
    flowFile = join(dir, 'flow.yaml');
    writeFileSync(
      flowFile,
      `${exampleFlowText()
        .replace('resources: [Organization, Practitioner, Patient]', 'resources: [Organization]')
        .replace(/ {2}consent:\n(?: {4}.*\n)+/, '')
        .replace(/ {2}policy:\n(?: {4}.*\n)+/, '')
        .replace(
          'rate: 20\n    burst: 20',
          'rate: 1000\n    burst: 1000',
        )}\nschedule:\n  intervalSeconds: 1\n`,
    );
    env = {
      SLUICE_EHR_URL: ehr.url,
      SLUICE_CRM_URL: crm.url,
      SLUICE_PSEUDONYM_KEY: randomBytes(32).toString('base64'),
      SLUICE_STATE_DIR: join(dir, 'state'),
    };
  }, 60_000);
  afterAll(async () => {
    await Promise.all([ehr?.close(), crm?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('records the first cycle and each cycle with a change, not the idle ones in between', async () => {
    const loop = startLoop(['run', flowFile, '--json', '--no-progress'], env);
    const summaries = () => loop.lines.map(json).filter((s) => s?.runId !== undefined);
    try {
      await loop.until(() => summaries().filter((s) => s?.idle === true).length >= 3, 'three idle cycles');
      expect(summaries()[0]?.idle).toBeUndefined();
      expect(Number(summaries()[0]?.created)).toBeGreaterThan(0);

      // A change in the EHR: the next cycle carries it and is recorded.
      const [id] = ehr.repo.recordedIds('Organization') as [string];
      const org = await ehr.repo.readResource<Organization>('Organization', id);
      await ehr.repo.updateResource<Organization>({ ...org, name: 'Loop Mode Renamed' });
      await loop.until(() => summaries().some((s) => Number(s?.updated) > 0), 'the cycle with the change');
      await loop.until(() => summaries().at(-1)?.idle === true, 'an idle cycle after the change');
    } finally {
      expect(await loop.stop()).toBe(0);
    }
    const recorded = summaries().filter((s) => s?.idle !== true);
    expect(recorded).toHaveLength(2);
    expect(crm.records('Account').some((a) => a.Name === 'Loop Mode Renamed')).toBe(true);

    // The audit trail and the run history hold exactly those two cycles.
    const audit = await runSluice(['audit', 'query', flowFile, '--kind', 'run-start', '--json'], env);
    expect(audit.code).toBe(0);
    const starts = audit.stdout
      .split('\n')
      .map(json)
      .filter((e) => e?.kind === 'run-start');
    expect(starts.map((e) => e?.runId).sort()).toEqual(recorded.map((s) => s?.runId).sort());
    const status = await runSluice(['status', flowFile, '--json'], env);
    const runs = (json(status.stdout.trim().split('\n').at(-1) ?? '') as { runs?: { runId: string }[] }).runs;
    expect(runs?.map((r) => r.runId).sort()).toEqual(recorded.map((s) => s?.runId).sort());
  }, 120_000);

  it('as text, prints the first cycle and says once that it is waiting for changes', async () => {
    const loop = startLoop(['run', flowFile, '--no-progress'], env);
    try {
      await loop.until(() => loop.lines.some((l) => l.includes(': no changes at ')), 'the idle notice');
      await new Promise((r) => setTimeout(r, 2500));
    } finally {
      expect(await loop.stop()).toBe(0);
    }
    expect(loop.lines.filter((l) => l.startsWith('flow epic-to-veeva run '))).toHaveLength(1);
    expect(loop.lines.filter((l) => l.includes(': no changes at '))).toHaveLength(1);
  }, 120_000);
});
