import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { SluiceError } from '../../core/errors/index.ts';
import { REPO_ROOT } from '../../testkit/data.ts';
import { buildFlowRuntime } from '../runtime/build-flow.ts';
import { loadFlow } from './load-flow.ts';

const EXAMPLE = join(REPO_ROOT, 'examples', 'flows', 'epic-to-veeva.yaml');
const KEYS = join(REPO_ROOT, 'examples', 'keys');

/** The example flow with its signing and verification key paths made absolute, so copies elsewhere find them. */
function exampleText(): string {
  return readFileSync(EXAMPLE, 'utf8')
    .replace(/(signingKeyFile|verifyKeysFile): \.\.\/keys\//g, (_m, key: string) => `${key}: ${KEYS}/`)
    .replaceAll('../../config/', `${join(REPO_ROOT, 'config')}/`);
}

function env(overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    SLUICE_EHR_URL: 'http://127.0.0.1:8081/fhir',
    SLUICE_CRM_URL: 'http://127.0.0.1:8082',
    SLUICE_PSEUDONYM_KEY: randomBytes(32).toString('base64'),
    ...overrides,
  };
}

/** Runs `fn`, expecting it to throw a SluiceError, and returns that error. */
function thrown(fn: () => unknown): SluiceError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SluiceError);
    return err as SluiceError;
  }
  throw new Error('expected a SluiceError, nothing was thrown');
}

function issuesOf(err: SluiceError): string[] {
  expect(err.code).toBe('CFG_FLOW_INVALID');
  return [...(err.details.issues as readonly string[])];
}

let dir = '';
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-load-flow-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeFlow(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('loadFlow: the example flow', () => {
  it('loads with the three variables set, defaults applied, secrets decoded', () => {
    const keyBytes = randomBytes(32);
    const flow = loadFlow(EXAMPLE, {
      env: env({ SLUICE_PSEUDONYM_KEY: keyBytes.toString('base64') }),
      cwd: dir,
    });
    expect(flow.path).toBe(EXAMPLE);
    expect(flow.file.flow).toBe('epic-to-veeva');
    expect(flow.file.source.baseUrl).toBe('http://127.0.0.1:8081/fhir');
    expect(flow.file.target.baseUrl).toBe('http://127.0.0.1:8082');
    expect(flow.file.source.resources).toEqual(['Organization', 'Practitioner', 'Patient']);
    expect(flow.file.source.auth).toMatchObject({ kind: 'smart-backend-services', clientId: 'sluice-demo' });
    expect(flow.file.source.timeoutSeconds).toBe(60);
    expect(flow.file.stages.withhold.map((r) => [r.reason, r.delivered])).toEqual([
      ['deceased', 'delete'],
      ['merged', 'delete'],
      ['inactive', 'keep'],
    ]);
    expect(flow.file.stages.provenance.delivered).toBe('delete');
    expect(flow.pseudonymKey.id).toBe('demo-1');
    expect(Buffer.from(flow.pseudonymKey.secret).equals(keyBytes)).toBe(true);
    expect(flow.restrictedZip3.has('036')).toBe(true);
    expect(flow.restrictedZip3.has('019')).toBe(false);
    expect(flow.sourcePrivateKey).toMatchObject({ kty: 'RSA', alg: 'RS384' });
    expect(typeof flow.sourcePrivateKey?.d).toBe('string');
    expect(flow.stateDir).toBe(join(dir, '.sluice'));
    expect(flow.definitionHash).toMatch(/^[0-9a-f]{64}$/);
    expect(flow.file.stages.consent?.cacheSize).toBe(20_000);
  });

  it('takes a consent cache size within bounds; the default is 20,000 people', () => {
    const text = exampleText().replace('privateKeyFile: ../keys/', `privateKeyFile: ${KEYS}/`);
    const base = loadFlow(writeFlow('cache-default.yaml', text), { env: env(), cwd: dir });
    const sized = text.replace('    onRevoke: delete', '    onRevoke: delete\n    cacheSize: 5000');
    expect(sized).not.toBe(text);
    const flow = loadFlow(writeFlow('cache-5000.yaml', sized), { env: env(), cwd: dir });
    expect(flow.file.stages.consent?.cacheSize).toBe(5000);
    expect(flow.definitionHash).not.toBe(base.definitionHash);
    const tiny = text.replace('    onRevoke: delete', '    onRevoke: delete\n    cacheSize: 3');
    expect(
      issuesOf(thrown(() => loadFlow(writeFlow('cache-3.yaml', tiny), { env: env(), cwd: dir }))),
    ).toEqual([expect.stringContaining('stages.consent.cacheSize')]);
  });

  it('is deeply frozen', () => {
    const flow = loadFlow(EXAMPLE, { env: env(), cwd: dir });
    expect(Object.isFrozen(flow)).toBe(true);
    expect(Object.isFrozen(flow.file.source)).toBe(true);
    expect(Object.isFrozen(flow.file.stages.withhold[0])).toBe(true);
    expect(Object.isFrozen(flow.sourcePrivateKey)).toBe(true);
    expect(() => {
      (flow.file.target as { baseUrl: string }).baseUrl = 'http://evil.example';
    }).toThrow(TypeError);
    expect(flow.file.target.baseUrl).toBe('http://127.0.0.1:8082');
  });

  it('has a definitionHash that is stable and independent of environment values', () => {
    const a = loadFlow(EXAMPLE, { env: env(), cwd: dir });
    const b = loadFlow(EXAMPLE, {
      env: env({ SLUICE_EHR_URL: 'https://other.example/fhir', SLUICE_PSEUDONYM_KEY: 'ab'.repeat(40) }),
      cwd: dir,
    });
    expect(b.definitionHash).toBe(a.definitionHash);
    expect(b.file.source.baseUrl).toBe('https://other.example/fhir');
    // A change to the definition itself changes the hash.
    const text = readFileSync(EXAMPLE, 'utf8')
      .replaceAll('../keys/', `${KEYS}/`)
      .replaceAll('../../config/', `${join(REPO_ROOT, 'config')}/`);
    const same = loadFlow(writeFlow('same.yaml', text), { env: env(), cwd: dir });
    const edited = loadFlow(writeFlow('edited.yaml', text.replace('pageSize: 200', 'pageSize: 100')), {
      env: env(),
      cwd: dir,
    });
    expect(loadFlow(writeFlow('same-again.yaml', text), { env: env(), cwd: dir }).definitionHash).toBe(
      same.definitionHash,
    );
    expect(edited.definitionHash).not.toBe(same.definitionHash);
  });

  it('accepts a hex pseudonym key', () => {
    const hex = randomBytes(40).toString('hex');
    const flow = loadFlow(EXAMPLE, { env: env({ SLUICE_PSEUDONYM_KEY: hex }), cwd: dir });
    expect(flow.pseudonymKey.secret).toHaveLength(40);
  });

  it('reports a missing environment variable by variable name and key, never loading', () => {
    const err = thrown(() => loadFlow(EXAMPLE, { env: env({ SLUICE_PSEUDONYM_KEY: undefined }), cwd: dir }));
    const issues = issuesOf(err);
    expect(
      issues.some((i) => i.startsWith('stages.pseudonymize.key: environment variable SLUICE_PSEUDONYM_KEY')),
    ).toBe(true);
    // … and only that for the key: its empty value failing the key checks would be noise.
    expect(issues.filter((i) => i.startsWith('stages.pseudonymize.key:'))).toHaveLength(1);
  });

  it('refuses a short pseudonym key without echoing it', () => {
    const short = randomBytes(16).toString('base64');
    const err = thrown(() => loadFlow(EXAMPLE, { env: env({ SLUICE_PSEUDONYM_KEY: short }), cwd: dir }));
    expect(issuesOf(err)).toEqual(['stages.pseudonymize.key: decodes to 16 bytes; at least 32 are required']);
    expect(JSON.stringify(err.toJSON())).not.toContain(short);
    expect(err.message).not.toContain(short);
  });
});

describe('loadFlow: state encryption', () => {
  const withEncryption = (keyLine: string) =>
    writeFlow(
      'encrypted.yaml',
      exampleText()
        .replace('privateKeyFile: ../keys/', `privateKeyFile: ${KEYS}/`)
        .replace(/^state:\n/m, `state:\n  encryption:\n    key: ${keyLine}\n    keyId: state-2026-12\n`),
    );

  it('derives the key that seals record copies, named by its key id', () => {
    const flow = loadFlow(withEncryption('${SLUICE_STATE_KEY}'), {
      env: env({ SLUICE_STATE_KEY: randomBytes(32).toString('base64') }),
      cwd: dir,
    });
    expect(flow.payloadKey?.keyId).toBe('state-2026-12');
    expect(flow.payloadKey?.key).toHaveLength(32);
    expect(loadFlow(EXAMPLE, { env: env(), cwd: dir }).payloadKey).toBeUndefined();
  });

  it('keeps the keys of before a rotation, each checked by its own key', () => {
    const file = writeFlow(
      'rotated.yaml',
      readFileSync(withEncryption('${SLUICE_STATE_KEY}'), 'utf8').replace(
        '    keyId: state-2026-12\n',
        '    keyId: state-2026-12\n    previous:\n      - key: ${OLD_STATE_KEY}\n        keyId: state-2026-06\n',
      ),
    );
    const flow = loadFlow(file, {
      env: env({
        SLUICE_STATE_KEY: randomBytes(32).toString('base64'),
        OLD_STATE_KEY: randomBytes(32).toString('hex'),
      }),
      cwd: dir,
    });
    expect(flow.payloadKey?.previous?.map((k) => k.keyId)).toEqual(['state-2026-06']);
    const err = thrown(() =>
      loadFlow(file, {
        env: env({ SLUICE_STATE_KEY: randomBytes(32).toString('base64'), OLD_STATE_KEY: 'abcd' }),
        cwd: dir,
      }),
    );
    expect(issuesOf(err)).toEqual([
      'state.encryption.previous[0].key: decodes to 2 bytes; at least 32 are required',
    ]);
  });

  it('refuses a short or missing secret by its key, without echoing it', () => {
    const short = randomBytes(12).toString('hex');
    const err = thrown(() =>
      loadFlow(withEncryption('${SLUICE_STATE_KEY}'), { env: env({ SLUICE_STATE_KEY: short }), cwd: dir }),
    );
    expect(issuesOf(err)).toEqual(['state.encryption.key: decodes to 12 bytes; at least 32 are required']);
    expect(JSON.stringify(err.toJSON())).not.toContain(short);
    const missing = thrown(() => loadFlow(withEncryption('${SLUICE_STATE_KEY}'), { env: env(), cwd: dir }));
    expect(issuesOf(missing).some((i) => i.startsWith('state.encryption.key: environment variable'))).toBe(
      true,
    );
  });
});

describe('loadFlow: cluster mode (state.postgres)', () => {
  const withPostgres = (name: string, state: string) =>
    writeFlow(
      name,
      exampleText()
        .replace('privateKeyFile: ../keys/', `privateKeyFile: ${KEYS}/`)
        .replace(/^state:\n/m, `state:\n${state}`),
    );
  const sealed = '  encryption:\n    key: ${SLUICE_STATE_KEY}\n    keyId: state-2026-12\n';

  it('takes the server from the environment, with the default schema and pool', () => {
    const file = withPostgres('pg.yaml', `  postgres:\n    url: \${SLUICE_PG_URL}\n${sealed}`);
    const flow = loadFlow(file, {
      env: env({
        SLUICE_PG_URL: 'postgres://sluice:pw@db.internal:5432/sluice',
        SLUICE_STATE_KEY: randomBytes(32).toString('base64'),
      }),
      cwd: dir,
    });
    expect(flow.file.state.postgres).toEqual({
      url: 'postgres://sluice:pw@db.internal:5432/sluice',
      schema: 'sluice',
      poolSize: 4,
    });
  });

  it('refuses record copies in a server unsealed, a URL of another kind and a schema name that needs quoting', () => {
    const err = thrown(() =>
      loadFlow(withPostgres('pg-bad.yaml', '  postgres:\n    url: mysql://db/x\n    schema: Sluice-Prod\n'), {
        env: env(),
        cwd: dir,
      }),
    );
    expect(issuesOf(err).sort()).toEqual([
      'state.encryption: cluster mode (state.postgres) keeps quarantined records and the change log in a server, where erased rows stay in its write-ahead log, backups and replicas: set state.encryption',
      'state.postgres.schema: lower-case letters, digits and underscores, at most 63',
      'state.postgres.url: a postgres:// or postgresql:// connection URL',
    ]);
  });
});

describe('loadFlow: patient data without a consent stage', () => {
  /** The example flow with its stages changed by `edit` (the policy goes too: it names the consent recipient). */
  function variant(
    name: string,
    edit: (flow: { source: Record<string, unknown>; stages: Record<string, unknown> }) => void,
  ) {
    const text = exampleText().replace('privateKeyFile: ../keys/', `privateKeyFile: ${KEYS}/`);
    const flow = parse(text) as { source: Record<string, unknown>; stages: Record<string, unknown> };
    delete flow.stages.consent;
    delete flow.stages.policy;
    edit(flow);
    return writeFlow(name, stringify(flow));
  }

  it('is refused unless the flow states why it needs none', () => {
    const err = thrown(() =>
      loadFlow(
        variant('no-consent.yaml', () => {}),
        { env: env(), cwd: dir },
      ),
    );
    expect(issuesOf(err)).toEqual([
      'stages.consent: the flow reads patient data (Patient): add a consent stage, or state in stages.withoutConsent.basis why none is needed',
    ]);
    const basis = "HIPAA 45 CFR 164.506(c)(1): the covered entity's own health care operations";
    const waived = loadFlow(
      variant('waived.yaml', (f) => {
        f.stages.withoutConsent = { basis };
      }),
      { env: env(), cwd: dir },
    );
    expect(waived.file.stages.withoutConsent?.basis).toBe(basis);
    const vague = thrown(() =>
      loadFlow(
        variant('vague.yaml', (f) => {
          f.stages.withoutConsent = { basis: 'ok' };
        }),
        { env: env(), cwd: dir },
      ),
    );
    expect(issuesOf(vague)).toEqual([
      'stages.withoutConsent.basis: state the basis in a sentence (at least 12 characters)',
    ]);
    // It is written into the audit trail: one line of at most 256 characters.
    for (const basis of ['x'.repeat(257), 'HIPAA 164.506(c)\nsecond line']) {
      const refused = thrown(() =>
        loadFlow(
          variant('long.yaml', (f) => {
            f.stages.withoutConsent = { basis };
          }),
          { env: env(), cwd: dir },
        ),
      );
      expect(issuesOf(refused)[0]).toMatch(/^stages\.withoutConsent\.basis: /);
    }
  });

  it('needs nothing for the provider directory alone, and refuses a consent stage waived as well', () => {
    const directory = loadFlow(
      variant('directory.yaml', (f) => {
        f.source.resources = ['Organization', 'Practitioner'];
      }),
      { env: env(), cwd: dir },
    );
    expect(directory.file.stages.consent).toBeUndefined();
    const both = variant('both.yaml', (f) => {
      f.stages = {
        ...(parse(exampleText()) as { stages: Record<string, unknown> }).stages,
        withoutConsent: { basis: 'a basis that is long enough' },
      };
    });
    expect(issuesOf(thrown(() => loadFlow(both, { env: env(), cwd: dir })))).toEqual([
      'stages.withoutConsent: a flow with a consent stage cannot also do without one: remove one of the two',
    ]);
  });
});

describe('loadFlow offline (commands that read the state only)', () => {
  it('stands placeholders in for unset connection settings, and for nothing else', () => {
    const offline = loadFlow(EXAMPLE, {
      env: env({ SLUICE_EHR_URL: undefined, SLUICE_CRM_URL: '' }),
      cwd: dir,
      offline: true,
    });
    expect(offline.offline).toBe(true);
    expect(offline.file.source.baseUrl).toBe('http://offline.invalid/');
    expect(offline.file.target.baseUrl).toBe('http://offline.invalid/');
    // The pseudonym key is not a connection setting: still required.
    const noKey = thrown(() =>
      loadFlow(EXAMPLE, {
        env: env({ SLUICE_EHR_URL: undefined, SLUICE_PSEUDONYM_KEY: undefined }),
        cwd: dir,
        offline: true,
      }),
    );
    expect(issuesOf(noKey)).toEqual([
      'stages.pseudonymize.key: environment variable SLUICE_PSEUDONYM_KEY is not set (export it, or write ${SLUICE_PSEUDONYM_KEY:-default})',
    ]);
    // Set variables are used as they are, and a flow loaded as usual is not offline.
    expect(loadFlow(EXAMPLE, { env: env(), cwd: dir, offline: true }).offline).toBeUndefined();
    expect(thrown(() => loadFlow(EXAMPLE, { env: env({ SLUICE_EHR_URL: undefined }), cwd: dir })).code).toBe(
      'CFG_FLOW_INVALID',
    );
  });

  it('cannot build a runtime that would connect', async () => {
    const offline = loadFlow(EXAMPLE, { env: env({ SLUICE_EHR_URL: undefined }), cwd: dir, offline: true });
    await expect(buildFlowRuntime(offline)).rejects.toMatchObject({ code: 'CFG_FLOW_INVALID' });
  });
});

describe('loadFlow: broken files', () => {
  it('a missing file is CFG_FLOW_UNREADABLE', () => {
    const err = thrown(() => loadFlow(join(dir, 'nope.yaml'), { env: env() }));
    expect(err.code).toBe('CFG_FLOW_UNREADABLE');
    expect(err.message).toContain('ENOENT');
  });

  it('a YAML syntax error is CFG_FLOW_UNREADABLE naming the line', () => {
    const path = writeFlow('syntax.yaml', 'flow: x\nversion: 1\nsource:\n  kind: [fhir-r4\n  system: epic\n');
    const err = thrown(() => loadFlow(path, { env: env() }));
    expect(err.code).toBe('CFG_FLOW_UNREADABLE');
    expect(err.message).toMatch(/at line \d+, column \d+/);
    const line = Number(/at line (\d+)/.exec(err.message)?.[1]);
    expect(line).toBeGreaterThanOrEqual(4);
    expect(line).toBeLessThanOrEqual(6);
  });

  it('a duplicated key is CFG_FLOW_UNREADABLE at its line', () => {
    const path = writeFlow('dup.yaml', 'flow: x\nversion: 1\nflow: y\n');
    const err = thrown(() => loadFlow(path, { env: env() }));
    expect(err.code).toBe('CFG_FLOW_UNREADABLE');
    expect(err.message).toContain('at line 3');
  });

  it('reports every problem of a file at once in ONE CFG_FLOW_INVALID, each with its dotted key', () => {
    const shortKey = 'c2hvcnQta2V5';
    const path = writeFlow(
      'many.yaml',
      `flow: many-problems
version: 1
purpose: HOPERAT
colour: blue
source:
  kind: fhir-r4
  system: epic
  baseUrl: not a url
  auth:
    kind: smart-backend-services
    clientId: sluice
    privateKeyFile: ./missing.private.jwk.json
  resources: [Organization, Practitioner, Patient]
target:
  kind: salesforce
  system: veeva
  baseUrl: \${SLUICE_TEST_CRM_URL}
  auth: { kind: client-credentials, clientId: a, clientSecret: b, extra: 1 }
  recordTypes: { hcp: a, hco: b }
stages:
  withhold:
    - resourceType: Patient
      when: deceased.exists() and deceased != false
      reason: deceased
    - resourceType: Practitioner
      when: active = (false
      reason: inactive
  pseudonymize:
    key: ${shortKey}
    keyId: k1
    restrictedZip3: [hhs-2000, no-such-list]
`,
    );
    const err = thrown(() => loadFlow(path, { env: {} }));
    const issues = issuesOf(err);
    const keys = issues.map((i) => i.slice(0, i.indexOf(': ')));
    const expected = [
      'colour', // unknown key
      'target.auth.extra', // unknown nested key
      'target.kind', // wrong kind
      'source.baseUrl', // bad URL
      'target.baseUrl', // missing environment variable
      'source.auth.privateKeyFile', // private key file missing
      'stages.pseudonymize.key', // short key
      'stages.withhold[1].when', // invalid FHIRPath
      'stages.pseudonymize.restrictedZip3[1]', // unknown list
    ];
    for (const key of expected) expect(keys, `${key} should be reported`).toContain(key);
    expect(issues).toContain('colour: unknown key');
    expect(issues).toContain('stages.pseudonymize.key: decodes to 9 bytes; at least 32 are required');
    expect(issues.some((i) => i.startsWith('target.baseUrl: environment variable SLUICE_TEST_CRM_URL'))).toBe(
      true,
    );
    expect(issues.some((i) => /^source\.auth\.privateKeyFile: cannot read .*ENOENT/.test(i))).toBe(true);
    expect(keys).not.toContain('stages.withhold[0].when');
    expect(new Set(issues).size).toBe(issues.length);
    expect(err.message).toContain(`has ${issues.length} error(s)`);
    expect(err.message).not.toContain(shortKey);
  });

  it('refuses a public JWK where the private one is needed', () => {
    const jwks = JSON.parse(readFileSync(join(KEYS, 'ehr-client.jwks.json'), 'utf8')) as { keys: object[] };
    writeFileSync(join(dir, 'public.jwk.json'), JSON.stringify(jwks.keys[0]));
    const text = exampleText().replace(
      'privateKeyFile: ../keys/ehr-client-rs384.private.jwk.json',
      'privateKeyFile: ./public.jwk.json',
    );
    const err = thrown(() => loadFlow(writeFlow('public.yaml', text), { env: env() }));
    expect(issuesOf(err)).toEqual([
      'source.auth.privateKeyFile: the key is a public key; the flow needs the private JWK',
    ]);
  });

  it('refuses a JWKS or a key with another algorithm', () => {
    const text = exampleText().replace(
      'privateKeyFile: ../keys/ehr-client-rs384.private.jwk.json',
      `privateKeyFile: ${join(KEYS, 'ehr-client.jwks.json')}`,
    );
    const err = thrown(() => loadFlow(writeFlow('jwks.yaml', text), { env: env() }));
    expect(issuesOf(err)).toEqual([
      'source.auth.privateKeyFile: the key must be a JWK with "alg" RS384 or ES384',
    ]);
  });

  it('resolves the private key relative to the flow file (an ES384 key loads)', () => {
    writeFileSync(join(dir, 'es.jwk.json'), readFileSync(join(KEYS, 'ehr-client-es384.private.jwk.json')));
    const text = exampleText().replace(
      'privateKeyFile: ../keys/ehr-client-rs384.private.jwk.json',
      'privateKeyFile: es.jwk.json',
    );
    const flow = loadFlow(writeFlow('es.yaml', text), { env: env(), cwd: dir });
    expect(flow.sourcePrivateKey).toMatchObject({ kty: 'EC', alg: 'ES384' });
  });

  it('a file that is not a mapping is CFG_FLOW_INVALID, not a crash', () => {
    for (const [name, text] of [
      ['scalar.yaml', 'just a string\n'],
      ['list.yaml', '- a\n- b\n'],
      ['empty.yaml', ''],
    ] as const) {
      const err = thrown(() => loadFlow(writeFlow(name, text), { env: env() }));
      expect(err.code, name).toBe('CFG_FLOW_INVALID');
    }
  });
});
