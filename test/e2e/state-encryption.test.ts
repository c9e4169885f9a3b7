import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, describe, expect, it } from 'vitest';
import { type DemoRun, runDemo } from '../../src/demo/run-demo.ts';
import { REPO_ROOT } from '../../src/testkit/data.ts';
import { lastJson, runSluice } from '../../src/testkit/sluice-process.ts';

const EXAMPLE = join(REPO_ROOT, 'examples', 'flows', 'epic-to-veeva.yaml');

const sluice = runSluice;
const last = lastJson;

describe('state encryption', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-sealed-'));
  let demo: DemoRun | undefined;
  afterAll(async () => {
    await demo?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps quarantined records and the change log sealed; they read with the key and only with it', async () => {
    // The example flow with state.encryption, its relative paths made absolute.
    const flowFile = join(dir, 'sealed.yaml');
    writeFileSync(
      flowFile,
      readFileSync(EXAMPLE, 'utf8')
        .replaceAll('../keys/', `${join(REPO_ROOT, 'examples', 'keys')}/`)
        .replaceAll('../../config/', `${join(REPO_ROOT, 'config')}/`)
        .replace(
          /^state:\n/m,
          'state:\n  encryption:\n    key: ${SLUICE_STATE_KEY}\n    keyId: demo-state-1\n',
        ),
    );
    const stateKey = randomBytes(32).toString('base64');
    const pseudonymKey = randomBytes(32).toString('base64');
    process.env.SLUICE_STATE_KEY = stateKey;
    process.env.SLUICE_PSEUDONYM_KEY = pseudonymKey;
    try {
      demo = await runDemo({ stateDir: dir, flowFile });
    } finally {
      delete process.env.SLUICE_STATE_KEY;
      delete process.env.SLUICE_PSEUDONYM_KEY;
    }
    expect(demo.summary.status).toBe('succeeded');
    expect(demo.summary.quarantined).toBeGreaterThan(0);

    // In the database: sealed values only, none of the patients' names.
    const db = new DatabaseSync(join(dir, 'epic-to-veeva.sqlite'), { readOnly: true });
    const payloads = [
      ...(db.prepare('SELECT payload FROM quarantine').all() as { payload: string }[]),
      ...(db.prepare('SELECT payload FROM change_log').all() as { payload: string }[]),
    ].map((r) => r.payload);
    db.close();
    expect(payloads.length).toBeGreaterThan(demo.summary.quarantined);
    // Each is the prefix and base64url ciphertext, nothing else: no plaintext can sit beside it. (Scanning
    // ciphertext for names finds short ones by chance: a 4-letter name turns up in a megabyte of base64.)
    expect(payloads.filter((p) => !/^sluice-enc1:demo-state-1:[A-Za-z0-9_-]+$/.test(p))).toEqual([]);
    // The CLI opens them under the flow's key …
    const env = {
      SLUICE_EHR_URL: demo.ehr.url,
      SLUICE_CRM_URL: demo.crm.url,
      SLUICE_PSEUDONYM_KEY: pseudonymKey,
      SLUICE_STATE_DIR: dir,
    };
    const [entry] = await demo.store.listQuarantine({ flow: 'epic-to-veeva' });
    const id = String(entry?.id);
    const shown = await sluice(['quarantine', 'show', flowFile, id, '--with-payload', '--json'], {
      ...env,
      SLUICE_STATE_KEY: stateKey,
    });
    expect(shown.code).toBe(0);
    expect((last(shown.stdout).payload as { resourceType?: string }).resourceType).toBe(entry?.stream);
    // Without the key, what is quarantined and why still lists and shows, the record does not.
    const listed = await sluice(['quarantine', 'list', EXAMPLE, '--json'], env);
    expect(listed.code).toBe(0);
    expect(
      listed.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line).id),
    ).toContain(id);
    const summary = await sluice(['quarantine', 'show', EXAMPLE, id, '--json'], env);
    expect(last(summary.stdout)).toMatchObject({ id, code: entry?.code, payloadKept: true });
    expect(last(summary.stdout).payload).toBeUndefined();
    // … and the record is refused without it (the example flow names no key) or under another secret.
    const locked = await sluice(['quarantine', 'show', EXAMPLE, id, '--with-payload', '--json'], env);
    expect(locked.code).not.toBe(0);
    expect(last(locked.stdout)).toMatchObject({ error: { code: 'STATE_PAYLOAD_LOCKED' } });
    const wrong = await sluice(['quarantine', 'show', flowFile, id, '--with-payload', '--json'], {
      ...env,
      SLUICE_STATE_KEY: randomBytes(32).toString('base64'),
    });
    expect(last(wrong.stdout)).toMatchObject({ error: { code: 'STATE_PAYLOAD_TAMPERED' } });
  }, 120_000);
});
