import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { referenceRows } from '../../src/engine/config/flow-reference.ts';
import { FIXTURES_DIR, REPO_ROOT, sharedDataDir } from '../../src/testkit/data.ts';
import { runSluice } from '../../src/testkit/sluice-process.ts';

const BIN = join(REPO_ROOT, 'bin', 'sluice.js');
const FLOW = join(REPO_ROOT, 'examples', 'flows', 'epic-to-veeva.yaml');

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

const sluice = runSluice;

/** Starts a long-running command and resolves with its first stdout line. */
function firstLine(args: string[]): Promise<{ child: ChildProcess; line: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (line) => resolve({ child, line }));
    child.once('exit', (code) => reject(new Error(`exited ${code} before printing a line`)));
  });
}

const children: ChildProcess[] = [];
const dirs: string[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGTERM');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('output to a reader that went away', () => {
  it('finishes the command and exits with its own code, not a broken-pipe crash', async () => {
    const file = join(sharedDataDir() ?? FIXTURES_DIR, 'fhir-r4-examples', 'Patient-example.json');
    const result = await new Promise<Result>((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, 'validate', file, '--json'], {
        cwd: REPO_ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      // The read end closes before the command writes anything (as `| head -0` would).
      child.stdout.destroy();
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => {
        stderr += d;
      });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout: '', stderr }));
    });
    expect(result.stderr).not.toContain('EPIPE');
    expect(result.code).toBe(0);
  });
});

describe('sluice demo --json', () => {
  it('exits 0 and its last stdout line reports delivered = what the CRM holds', async () => {
    const result = await sluice(['demo', '--json'], { SLUICE_LOG_LEVEL: 'warn' });
    expect(result.code, result.stderr).toBe(0);
    const last = result.stdout.trim().split('\n').at(-1) ?? '';
    const summary = JSON.parse(last) as Record<string, unknown>;
    for (const key of ['read', 'delivered', 'quarantined', 'withheld', 'batches', 'crmRecords']) {
      expect(summary, key).toHaveProperty(key);
    }
    expect(summary.delivered).toBeGreaterThan(0);
    expect(summary.delivered).toBe(summary.crmRecords);
  }, 60_000);
});

describe('sluice run against sandboxes started separately', () => {
  it('prints each sandbox URL on one line, then moves data with ${ENV} references', async () => {
    const ehr = await firstLine([
      'sandbox',
      'ehr',
      '--port',
      '0',
      '--seed',
      join(REPO_ROOT, 'examples', 'data'),
    ]);
    children.push(ehr.child);
    const crm = await firstLine(['sandbox', 'crm', '--port', '0']);
    children.push(crm.child);
    expect(ehr.line).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/fhir$/);
    expect(crm.line).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const metadata = await fetch(`${ehr.line}/metadata`);
    expect(metadata.status).toBe(200);

    const state = mkdtempSync(join(tmpdir(), 'sluice-cli-'));
    dirs.push(state);
    const env = {
      SLUICE_EHR_URL: ehr.line,
      SLUICE_CRM_URL: crm.line,
      SLUICE_PSEUDONYM_KEY: randomBytes(32).toString('base64'),
      SLUICE_STATE_DIR: state,
    };
    const first = await sluice(['run', FLOW, '--once', '--json'], env);
    expect(first.code, first.stderr).toBe(0);
    const summary = JSON.parse(first.stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, number>;
    expect(summary.delivered).toBeGreaterThan(0);
    const held = (await (await fetch(`${crm.line}/__sandbox/records`)).json()) as { records: unknown[] };
    expect(held.records.length).toBe(summary.delivered);

    const second = await sluice(['run', FLOW, '--once', '--json'], env);
    expect(second.code, second.stderr).toBe(0);
    expect(JSON.parse(second.stdout.trim().split('\n').at(-1) ?? '{}').delivered).toBe(0);

    // Where the flow stands, from its state: checkpoints, quarantine, runs and the risk (k) trend.
    const status = await sluice(['status', FLOW, '--json'], env);
    expect(status.code, status.stderr).toBe(0);
    const report = JSON.parse(status.stdout.trim().split('\n').at(-1) ?? '{}') as {
      checkpoints: { stream: string }[];
      openQuarantine: number;
      runs: { status: string; minK?: number }[];
    };
    expect(report.checkpoints.map((c) => c.stream).sort()).toEqual([
      'Consent',
      'Organization',
      'Patient',
      'Practitioner',
    ]);
    expect(report.openQuarantine).toBeGreaterThan(0);
    expect(report.runs.map((r) => r.status)).toEqual(['succeeded', 'succeeded']);
    expect(report.runs[1]?.minK).toBeGreaterThanOrEqual(1);
  }, 90_000);
});

describe('a bad flow file', () => {
  it('is rejected before anything moves, listing every error with its key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-bad-'));
    dirs.push(dir);
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      [
        'flow: Bad Name',
        'version: 1',
        'purpose: SELLING',
        'source:',
        '  kind: fhir-r4',
        '  system: epic',
        '  baseUrl: not-a-url',
        '  auth: { kind: none }',
        '  resources: [Patient, Encounter]',
        '  colour: blue',
        'target:',
        '  kind: veeva-crm',
        '  system: veeva',
        '  baseUrl: ${NO_SUCH_VARIABLE_FOR_SLUICE}',
        '  auth: { kind: client-credentials, clientId: a, clientSecret: b }',
        '  recordTypes: { hcp: x, hco: y }',
        'stages:',
        '  pseudonymize: { key: c2hvcnQ=, keyId: k }',
      ].join('\n'),
    );
    const result = await sluice(['flow', 'check', file]);
    expect(result.code).toBe(2);
    for (const key of [
      'flow',
      'purpose',
      'source.baseUrl',
      'source.resources[1]',
      'source.colour',
      'target.baseUrl',
      'audit',
      'stages.pseudonymize.key',
    ]) {
      expect(result.stderr, key).toContain(`${key}:`);
    }
    expect(result.stderr).toContain('CFG_FLOW_INVALID');
    expect(result.stderr).toContain('NO_SUCH_VARIABLE_FOR_SLUICE');

    const run = await sluice(['run', file, '--once', '--json']);
    expect(run.code).toBe(2);
    expect(JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}').error.code).toBe('CFG_FLOW_INVALID');
  }, 30_000);
});

describe('sluice audit verify', () => {
  it('passes on an untouched log and names the entry where a tampered one breaks', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-audit-'));
    dirs.push(dir);
    const demo = await sluice(['demo', '--json', '--state-dir', dir], { SLUICE_LOG_LEVEL: 'warn' });
    expect(demo.code, demo.stderr).toBe(0);
    // `audit verify` reads the flow file for its state dir and keys; the URLs are not contacted.
    const env = {
      SLUICE_EHR_URL: 'http://127.0.0.1:9/fhir',
      SLUICE_CRM_URL: 'http://127.0.0.1:9',
      SLUICE_PSEUDONYM_KEY: randomBytes(32).toString('base64'),
      SLUICE_STATE_DIR: dir,
    };
    const ok = await sluice(['audit', 'verify', FLOW, '--json'], env);
    expect(ok.code, ok.stderr).toBe(0);
    const report = JSON.parse(ok.stdout.trim().split('\n').at(-1) ?? '{}') as { ok: boolean; size: number };
    expect(report.ok).toBe(true);
    expect(report.size).toBeGreaterThan(100);

    // Flip one character of entry 42's stored text (the triggers refuse updates; an attacker drops them).
    const { DatabaseSync } = await import('node:sqlite');
    const db = new DatabaseSync(join(dir, 'epic-to-veeva.audit.sqlite'));
    db.exec('DROP TRIGGER audit_entries_no_update');
    const row = db.prepare('SELECT canonical FROM audit_entries WHERE seq = 42').get() as {
      canonical: string;
    };
    const flipped = row.canonical.replace(/"flow":"e/, '"flow":"f');
    expect(flipped).not.toBe(row.canonical);
    db.prepare('UPDATE audit_entries SET canonical = ? WHERE seq = 42').run(flipped);
    db.close();
    const broken = await sluice(['audit', 'verify', FLOW, '--json'], env);
    expect(broken.code).toBe(1);
    const brokenReport = JSON.parse(broken.stdout.trim().split('\n').at(-1) ?? '{}') as {
      ok: boolean;
      firstBreak: { seq: number };
    };
    expect(brokenReport.ok).toBe(false);
    expect(brokenReport.firstBreak.seq).toBe(42);
  }, 60_000);
});

describe('sluice flow keys', () => {
  it('lists every key of the flow schema, or those under a prefix, and refuses an unknown prefix', async () => {
    const all = await sluice(['flow', 'keys', '--json']);
    expect(all.code).toBe(0);
    const keys = all.stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { key: string }).key);
    expect(keys).toEqual(referenceRows().map((r) => r.key));
    const consent = await sluice(['flow', 'keys', 'stages.consent', '--json']);
    const under = consent.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { key: string; description: string });
    expect(under.map((r) => r.key)).toContain('stages.consent.recipient.id');
    expect(under.every((r) => r.key.startsWith('stages.consent') && r.description.length > 0)).toBe(true);
    const unknown = await sluice(['flow', 'keys', 'stages.nothing', '--json']);
    expect(unknown.code).toBe(2);
  });
});

describe('sluice validate', () => {
  it('accepts valid real data, lists every issue of a bad file with its path, and fails on non-JSON', async () => {
    const good = await sluice(['validate', join(REPO_ROOT, 'examples', 'data', 'synthea'), '--json']);
    expect(good.code, good.stderr).toBe(0);
    expect(JSON.parse(good.stdout.trim().split('\n').at(-1) ?? '{}').summary.resources).toBeGreaterThan(1000);

    const dir = mkdtempSync(join(tmpdir(), 'sluice-validate-'));
    dirs.push(dir);
    writeFileSync(
      join(dir, 'bad.ndjson'),
      [
        JSON.stringify({ resourceType: 'Patient', id: 'ok-1', gender: 'female' }),
        JSON.stringify({
          resourceType: 'Patient',
          id: 'bad 1',
          gender: 'mal',
          birthDate: '1990-02-30x',
          name: [],
        }),
        '{"resourceType": "Patient", "id": ',
      ].join('\n'),
    );
    writeFileSync(join(dir, 'notes.json'), 'this is not JSON at all');
    const bad = await sluice(['validate', join(dir, 'bad.ndjson'), join(dir, 'notes.json'), '--json']);
    expect(bad.code).toBe(1);
    const lines = bad.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const patient = lines.find((l) => l.resource === 'Patient/bad 1') as {
      line: number;
      issues: { code: string; path: string }[];
    };
    expect(patient.line).toBe(2);
    expect(patient.issues.map((i) => i.path).sort()).toEqual([
      'Patient.birthDate',
      'Patient.gender',
      'Patient.id',
      'Patient.name',
    ]);
    expect(lines.filter((l) => JSON.stringify(l).includes('REC_UNPARSEABLE'))).toHaveLength(2);
    expect((lines.at(-1) as { summary: { invalid: number } }).summary.invalid).toBe(3);
    // Values never appear in messages.
    expect(bad.stdout).not.toContain('1990-02-30x');
  }, 30_000);
});

describe('sluice consent explain', () => {
  it('says which consent and provision decided, or that the default applied', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-consent-'));
    dirs.push(dir);
    const env = {
      SLUICE_EHR_URL: 'http://127.0.0.1:9/fhir',
      SLUICE_CRM_URL: 'http://127.0.0.1:9',
      SLUICE_PSEUDONYM_KEY: randomBytes(32).toString('base64'),
      SLUICE_STATE_DIR: dir,
      SLUICE_LOG_LEVEL: 'warn',
    };
    const demo = await sluice(['demo', '--json', '--state-dir', dir], env);
    expect(demo.code, demo.stderr).toBe(0);
    const consents = readFileSync(join(REPO_ROOT, 'examples', 'data', 'consents', 'Consent.ndjson'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { patient: { reference: string }; provision: { type: string } });
    const permitted = consents.find((c) => c.provision.type === 'permit');
    const optedOut = consents.find((c) => c.provision.type === 'deny');
    const explain = async (person: string, ...extra: string[]) => {
      const r = await sluice(['consent', 'explain', FLOW, person, '--json', ...extra], env);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as {
        decision: string;
        subject: string;
        basis: { rule: string; consentRef?: string; provisionPath?: string };
      };
    };
    const yes = await explain(permitted?.patient.reference as string);
    expect(yes.decision).toBe('permit');
    expect(yes.basis.rule).toBe('provision');
    expect(yes.basis.consentRef).toMatch(/Consent\//);
    expect(yes.subject).toMatch(/^p[a-z2-7]{32}$/);
    const no = await explain(optedOut?.patient.reference as string);
    expect(no.decision).toBe('deny');
    expect(no.basis.provisionPath).toBe('provision');
    // Another purpose than the one consented to falls to the default.
    const marketing = await explain(permitted?.patient.reference as string, '--purpose', 'HMARKT');
    expect(marketing.decision).toBe('deny');
    const stranger = await explain('Patient/nobody-we-know');
    expect(stranger.decision).toBe('deny');
    expect(stranger.basis.rule).toBe('default');
  }, 60_000);
});
