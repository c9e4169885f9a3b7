import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isSluiceError } from '../errors/index.ts';
import { issueReidentifyPermission, TokenVault } from './vault.ts';

const dir = mkdtempSync(join(tmpdir(), 'sluice-vault-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const officer = generateKeyPairSync('ed25519');
const intruder = generateKeyPairSync('ed25519');
const secret = new Uint8Array(32).fill(42);
const REASON = 'adverse event follow-up, case 17';

function open(path = ':memory:', now?: () => Date): TokenVault {
  return TokenVault.open(path, { secret, permissionKey: officer.publicKey, ...(now ? { now } : {}) });
}

async function permission(
  actor: string,
  namespaces: string[],
  ttlSeconds = 600,
  now?: Date,
): Promise<string> {
  return issueReidentifyPermission(officer.privateKey, {
    actor,
    namespaces,
    ttlSeconds,
    ...(now ? { now } : {}),
  });
}

describe('TokenVault', () => {
  it('gives one token per value and namespace, random rather than derived', () => {
    const a = open();
    const b = open();
    const t1 = a.tokenize('mrn', 'MRN-0001');
    expect(t1).toMatch(/^t[a-z2-7]{26}$/);
    expect(a.tokenize('mrn', 'MRN-0001')).toBe(t1);
    expect(a.tokenize('mrn', 'MRN-0002')).not.toBe(t1);
    expect(a.tokenize('ssn', 'MRN-0001')).not.toBe(t1);
    // Same secret, another vault: a fresh random token (tokens are not a function of the value).
    expect(b.tokenize('mrn', 'MRN-0001')).not.toBe(t1);
    expect(a.size()).toBe(3);
  });

  it('persists tokens, keeps values encrypted at rest and refuses another secret', () => {
    const path = join(dir, 'vault.db');
    const v = open(path);
    const token = v.tokenize('ssn', '999-22-1962');
    v.close();
    for (const file of [path, `${path}-wal`]) {
      let bytes: Buffer;
      try {
        bytes = readFileSync(file);
      } catch {
        continue;
      }
      expect(bytes.includes(Buffer.from('999-22-1962'))).toBe(false);
    }
    const again = open(path);
    expect(again.tokenize('ssn', '999-22-1962')).toBe(token);
    again.close();
    let error: unknown;
    try {
      TokenVault.open(path, { secret: new Uint8Array(32).fill(1), permissionKey: officer.publicKey });
    } catch (err) {
      error = err;
    }
    expect(isSluiceError(error) && error.code).toBe('ANON_VAULT_FAILED');
    expect(() =>
      TokenVault.open(':memory:', { secret: new Uint8Array(16), permissionKey: officer.publicKey }),
    ).toThrow(/at least 32 bytes/);
  });

  it('re-identifies with a valid permission, actor and reason, and returns an audit event without the value', async () => {
    const v = open();
    const token = v.tokenize('mrn', 'MRN-0001');
    const result = await v.reidentify(token, {
      actor: 'dr.privacy',
      reason: REASON,
      permission: await permission('dr.privacy', ['mrn']),
    });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.reveal()).toBe('MRN-0001');
    expect(result.event).toMatchObject({ outcome: 'granted', actor: 'dr.privacy', token, namespace: 'mrn' });
    expect(JSON.stringify(result.event)).not.toContain('MRN-0001');
    expect(JSON.stringify(result)).not.toContain('MRN-0001');
    expect(v.attempts()).toEqual([{ ...result.event }]);
  });

  it('refuses without a proper permission, and records every refusal', async () => {
    const clock = { now: new Date('2030-01-01T00:00:00Z') };
    const v = open(':memory:', () => clock.now);
    const token = v.tokenize('mrn', 'MRN-0001');
    const good = await permission('alice', ['mrn'], 600, clock.now);
    const cases: [string, Promise<{ ok: boolean; code?: string; event: { denial?: string } }>][] = [
      ['no-reason', v.reidentify(token, { actor: 'alice', reason: 'because', permission: good })],
      [
        'invalid-permission',
        v.reidentify(token, { actor: 'alice', reason: REASON, permission: 'not-a-jwt' }),
      ],
      [
        'invalid-permission',
        v.reidentify(token, {
          actor: 'alice',
          reason: REASON,
          permission: await issueReidentifyPermission(intruder.privateKey, {
            actor: 'alice',
            namespaces: ['mrn'],
            ttlSeconds: 600,
            now: clock.now,
          }),
        }),
      ],
      ['actor', v.reidentify(token, { actor: 'mallory', reason: REASON, permission: good })],
      [
        'namespace',
        v.reidentify(token, {
          actor: 'alice',
          reason: REASON,
          permission: await permission('alice', ['ssn'], 600, clock.now),
        }),
      ],
    ];
    for (const [denial, pending] of cases) {
      const result = await pending;
      expect(result.ok, denial).toBe(false);
      expect(result.code, denial).toBe('ANON_REIDENTIFY_DENIED');
      expect(result.event.denial, denial).toBe(denial);
    }
    // A tampered payload (namespace widened to '*') breaks the signature.
    const [h, p, s] = good.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, ns: ['*'] })).toString('base64url')}.${s}`;
    expect((await v.reidentify(token, { actor: 'alice', reason: REASON, permission: forged })).ok).toBe(
      false,
    );

    // Expired: the clock moves past the permission's lifetime.
    clock.now = new Date('2030-01-01T00:11:00Z');
    const expired = await v.reidentify(token, { actor: 'alice', reason: REASON, permission: good });
    expect(expired.ok || expired.event.denial).toBe('expired');

    // Revoked: valid in time, but withdrawn.
    clock.now = new Date('2030-01-01T00:00:30Z');
    const claimsId = claims.jti as string;
    v.revokePermission(claimsId);
    const revoked = await v.reidentify(token, { actor: 'alice', reason: REASON, permission: good });
    expect(revoked.ok || revoked.event.denial).toBe('revoked');
    expect(v.attempts().every((a) => a.outcome === 'denied')).toBe(true);
    expect(v.attempts()).toHaveLength(cases.length + 3);
  });

  it('checks the permission before saying whether a token exists', async () => {
    const v = open();
    const noPermission = await v.reidentify('tunknown', {
      actor: 'alice',
      reason: REASON,
      permission: 'x.y.z',
    });
    expect(noPermission.ok || noPermission.event.denial).toBe('invalid-permission');
    const withPermission = await v.reidentify('tunknown', {
      actor: 'alice',
      reason: REASON,
      permission: await permission('alice', ['*']),
    });
    expect(withPermission.ok || withPermission.code).toBe('ANON_TOKEN_UNKNOWN');
  });

  it('issues short-lived permissions only', async () => {
    await expect(
      issueReidentifyPermission(officer.privateKey, {
        actor: 'a',
        namespaces: ['x'],
        ttlSeconds: 7 * 86_400,
      }),
    ).rejects.toThrow(/1 s to 24 h/);
  });
});
