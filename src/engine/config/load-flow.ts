import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { JWK } from 'jose';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { MIN_PSEUDONYM_KEY_BYTES, type PseudonymKey } from '../../core/anonymize/pseudonym.ts';
import { SluiceError } from '../../core/errors/index.ts';
import { type Allowlist, loadAllowlist } from '../../core/policy/allowlist.ts';
import { compileFhirPath } from '../../core/policy/fhirpath.ts';
import { type PayloadKey, payloadKey } from '../store/payload-cipher.ts';
import { type FlowFile, FlowFileSchema } from './flow-schema.ts';
import { interpolate } from './interpolate.ts';
import { loadRestrictedZip3 } from './restricted-zip3.ts';

export interface ConfigIssue {
  /** Dotted key in the flow file, e.g. `source.auth.clientId` (empty for the whole file). */
  readonly key: string;
  readonly message: string;
}

/** A flow parsed, validated, with secrets loaded and paths resolved; frozen. */
export interface ResolvedFlow {
  readonly path: string;
  readonly file: FlowFile;
  /** SHA-256 of the flow definition as written (before `${ENV}` substitution): ties checkpoints to it. */
  readonly definitionHash: string;
  readonly sourcePrivateKey: JWK | undefined;
  /** The recipient allowlist (`stages.policy.allowlistFile`), when the flow has one. */
  readonly allowlist: Allowlist | undefined;
  /** The private JWK that signs audit checkpoints (`audit.signingKeyFile`). */
  readonly auditSigningKey: JWK | undefined;
  /** Keys `sluice audit verify` trusts (`audit.verifyKeysFile`), when given. */
  readonly auditVerifyKeys: { readonly keys: readonly JWK[] } | undefined;
  /** The private JWK that signs batch envelopes (`stages.batch.signingKeyFile`), when set. */
  readonly batchSigningKey: JWK | undefined;
  readonly pseudonymKey: PseudonymKey;
  /** Seals the record copies the state keeps (`state.encryption`), when set. */
  readonly payloadKey: PayloadKey | undefined;
  readonly restrictedZip3: ReadonlySet<string>;
  /** Absolute state directory. */
  readonly stateDir: string;
  /**
   * Loaded for a command that reads the flow's state only (`offline`): connection settings whose
   * environment variables were unset hold placeholders, so nothing may connect with it.
   */
  readonly offline?: true;
}

export interface LoadFlowOptions {
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Resolves `state.dir`; default `process.cwd()`. */
  readonly cwd?: string;
  /**
   * For commands that only read the flow's state (status, quarantine list, audit, …): the source's and
   * target's URLs and client credentials may come from unset variables. Keys, the state folder and
   * everything else must still resolve.
   */
  readonly offline?: boolean;
}

/** Connection settings an offline command never uses, with the placeholder standing in for them. */
const OFFLINE_KEYS = /^(source|target)\.(baseUrl|auth\.(clientId|clientSecret))$/;
const offlinePlaceholder = (key: string): string =>
  key.endsWith('baseUrl') ? 'http://offline.invalid/' : 'offline';

/**
 * Reads and validates a flow file. Everything wrong is reported at once, each with its dotted key,
 * before anything moves: `CFG_FLOW_UNREADABLE` for syntax, `CFG_FLOW_INVALID` (with `details.issues`)
 * for content. File paths in the flow are relative to the flow file; `state.dir` to the working directory.
 */
export function loadFlow(path: string, options: LoadFlowOptions = {}): ResolvedFlow {
  const absolute = resolve(path);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (err) {
    throw new SluiceError(
      'CFG_FLOW_UNREADABLE',
      `Cannot read flow file ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}.`,
      {
        cause: err,
      },
    );
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const first = doc.errors[0];
    const where = first?.linePos?.[0]
      ? ` at line ${first.linePos[0].line}, column ${first.linePos[0].col}`
      : '';
    throw new SluiceError(
      'CFG_FLOW_UNREADABLE',
      `Flow file ${path} is not valid YAML${where}: ${first?.code ?? 'syntax error'}.`,
      {
        details: { file: path },
      },
    );
  }
  // Aliases are allowed, but not one that contains itself or expands without bound.
  let raw: unknown;
  let canonical: string;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
    canonical = JSON.stringify(raw);
  } catch (err) {
    const why = /alias/i.test((err as Error).message)
      ? 'its aliases expand too far (more than 100 expansions)'
      : 'a YAML alias refers to a node that contains it';
    throw new SluiceError('CFG_FLOW_UNREADABLE', `Flow file ${path} cannot be read: ${why}.`, {
      details: { file: path },
    });
  }
  const definitionHash = createHash('sha256').update(canonical).digest('hex');
  let env = options.env ?? process.env;
  let { value, missing } = interpolate(raw, env);
  // Offline, a variable only connection settings use stands in as a placeholder.
  const placeholders = options.offline ? offlineEnv(missing) : {};
  if (Object.keys(placeholders).length > 0) {
    env = { ...env, ...placeholders };
    ({ value, missing } = interpolate(raw, env));
  }
  const issues: ConfigIssue[] = missing.map((m) => ({
    key: m.key,
    message: `${UNSET_VARIABLE} ${m.variable} is not set (export it, or write \${${m.variable}:-default})`,
  }));
  const parsed = FlowFileSchema.safeParse(value);
  if (!parsed.success) issues.push(...zodIssues(parsed.error));

  const baseDir = dirname(absolute);
  const resolveFile = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));
  // Keys, lists and rules are checked even when the schema failed, so one run reports every problem.
  const parts = checkedParts(parsed.success ? parsed.data : value);
  const sourcePrivateKey =
    parts.privateKeyFile === undefined ? undefined : readJwk(resolveFile(parts.privateKeyFile), issues);
  const batchSigningKey =
    parts.signingKeyFile === undefined
      ? undefined
      : readJwk(resolveFile(parts.signingKeyFile), issues, 'stages.batch.signingKeyFile', ['ES256', 'EdDSA']);
  const auditSigningKey =
    parts.auditKeyFile === undefined
      ? undefined
      : readJwk(resolveFile(parts.auditKeyFile), issues, 'audit.signingKeyFile', [
          'EdDSA',
          'Ed25519',
          'ES256',
        ]);
  const auditVerifyKeys =
    parts.auditJwksFile === undefined
      ? undefined
      : readJwks(resolveFile(parts.auditJwksFile), issues, 'audit.verifyKeysFile');
  const secret =
    parts.key === undefined ? undefined : decodeKey(parts.key, issues, 'stages.pseudonymize.key');
  const stateSecret =
    parts.stateKey === undefined ? undefined : decodeKey(parts.stateKey, issues, 'state.encryption.key');
  const previousSecrets = parts.previousStateKeys.map((k, i) =>
    k === undefined ? undefined : decodeKey(k, issues, `state.encryption.previous[${i}].key`),
  );
  const restricted = loadRestrictedZip3(parts.restrictedZip3, issues);
  parts.withhold.forEach((when, index) => {
    if (when === undefined) return;
    try {
      compileFhirPath(when);
    } catch (err) {
      issues.push({
        key: `stages.withhold[${index}].when`,
        message: `not a valid FHIRPath expression: ${firstLine(err)}`,
      });
    }
  });
  if (!parsed.success || issues.length > 0) throw invalid(path, issues);
  const file = parsed.data;
  const allowlist = file.stages.policy
    ? readAllowlist(resolveFile(file.stages.policy.allowlistFile), file, issues)
    : undefined;
  if (issues.length > 0) throw invalid(path, issues);

  return deepFreeze({
    path: absolute,
    file,
    definitionHash,
    sourcePrivateKey,
    batchSigningKey,
    auditSigningKey,
    auditVerifyKeys,
    allowlist,
    pseudonymKey: { id: file.stages.pseudonymize.keyId, secret: secret as Uint8Array },
    payloadKey:
      file.state.encryption && stateSecret
        ? payloadKey(
            stateSecret,
            file.state.encryption.keyId,
            file.state.encryption.previous.map((p, i) =>
              payloadKey(previousSecrets[i] as Uint8Array, p.keyId),
            ),
          )
        : undefined,
    restrictedZip3: restricted,
    stateDir: resolve(options.cwd ?? process.cwd(), file.state.dir),
    ...(Object.keys(placeholders).length > 0 ? { offline: true as const } : {}),
  });
}

/** The parts of a flow checked beyond its schema, read leniently so a file failing the schema is checked too. */
function checkedParts(file: unknown): {
  privateKeyFile?: string;
  signingKeyFile?: string;
  auditKeyFile?: string;
  auditJwksFile?: string;
  key?: string;
  stateKey?: string;
  previousStateKeys: readonly (string | undefined)[];
  restrictedZip3: readonly string[];
  withhold: readonly (string | undefined)[];
} {
  const source = field(file, 'source');
  const auth = field(source, 'auth');
  const stages = field(file, 'stages');
  const pseudonymize = field(stages, 'pseudonymize');
  const privateKeyFile = field(auth, 'privateKeyFile');
  const key = field(pseudonymize, 'key');
  const encryption = field(field(file, 'state'), 'encryption');
  const stateKey = field(encryption, 'key');
  const previous = field(encryption, 'previous');
  const lists = field(pseudonymize, 'restrictedZip3');
  const withhold = field(stages, 'withhold');
  const signingKeyFile = field(field(stages, 'batch'), 'signingKeyFile');
  const audit = field(file, 'audit');
  const auditKeyFile = field(audit, 'signingKeyFile');
  const auditJwksFile = field(audit, 'verifyKeysFile');
  const nonEmptyString = (v: unknown): v is string => typeof v === 'string' && v !== '';
  return {
    ...(field(auth, 'kind') === 'smart-backend-services' && nonEmptyString(privateKeyFile)
      ? { privateKeyFile }
      : {}),
    ...(nonEmptyString(key) ? { key } : {}),
    ...(nonEmptyString(stateKey) ? { stateKey } : {}),
    previousStateKeys: Array.isArray(previous)
      ? previous.map((p) => {
          const k = field(p, 'key');
          return nonEmptyString(k) ? k : undefined;
        })
      : [],
    ...(nonEmptyString(signingKeyFile) ? { signingKeyFile } : {}),
    ...(nonEmptyString(auditKeyFile) ? { auditKeyFile } : {}),
    ...(nonEmptyString(auditJwksFile) ? { auditJwksFile } : {}),
    restrictedZip3: Array.isArray(lists) && lists.every(nonEmptyString) ? lists : [],
    withhold: Array.isArray(withhold)
      ? withhold.map((rule) => {
          const when = field(rule, 'when');
          return nonEmptyString(when) ? when : undefined;
        })
      : [],
  };
}

function field(value: unknown, name: string): unknown {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
    ? (value as Record<string, unknown>)[name]
    : undefined;
}

const UNSET_VARIABLE = 'environment variable';

function offlineEnv(missing: readonly { key: string; variable: string }[]): Record<string, string> {
  const out: Record<string, string> = {};
  const elsewhere = new Set(missing.filter((m) => !OFFLINE_KEYS.test(m.key)).map((m) => m.variable));
  for (const m of missing) {
    if (OFFLINE_KEYS.test(m.key) && !elsewhere.has(m.variable)) out[m.variable] = offlinePlaceholder(m.key);
  }
  return out;
}

function invalid(path: string, all: readonly ConfigIssue[]): SluiceError {
  // A value can fail two checks with the same message (e.g. a URL); list each problem once. A key whose
  // environment variable is not set says only that: its empty value failing other checks is noise.
  const unset = new Set(all.filter((i) => i.message.startsWith(UNSET_VARIABLE)).map((i) => i.key));
  const seen = new Set<string>();
  const issues = all.filter((i) => {
    const id = `${i.key}\u0000${i.message}`;
    if (seen.has(id) || (unset.has(i.key) && !i.message.startsWith(UNSET_VARIABLE))) return false;
    seen.add(id);
    return true;
  });
  const lines = issues.map((i) => `  - ${i.key || '(file)'}: ${i.message}`).join('\n');
  return new SluiceError('CFG_FLOW_INVALID', `Flow file ${path} has ${issues.length} error(s):\n${lines}`, {
    details: { file: path, issues: issues.map((i) => `${i.key || '(file)'}: ${i.message}`) },
  });
}

function zodIssues(error: z.ZodError): ConfigIssue[] {
  return error.issues.flatMap((issue) => {
    const key = issue.path
      .map((p) => (typeof p === 'number' ? `[${p}]` : String(p)))
      .join('.')
      .replace(/\.\[/g, '[');
    // One issue per unknown key, under its own dotted key (a misspelt key is easiest to find by name).
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((k) => ({ key: key === '' ? k : `${key}.${k}`, message: 'unknown key' }));
    }
    return [{ key, message: issue.message }];
  });
}

function readJwk(
  file: string,
  issues: ConfigIssue[],
  key = 'source.auth.privateKeyFile',
  algs: readonly string[] = ['RS384', 'ES384'],
): JWK | undefined {
  let jwk: unknown;
  try {
    jwk = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    issues.push({ key, message: code ? `cannot read ${file} (${code})` : `${file} is not JSON` });
    return undefined;
  }
  const alg = (jwk as { alg?: unknown }).alg;
  const d = (jwk as { d?: unknown }).d;
  if (typeof alg !== 'string' || !algs.includes(alg)) {
    issues.push({ key, message: `the key must be a JWK with "alg" ${algs.join(' or ')}` });
    return undefined;
  }
  if (typeof (jwk as { kid?: unknown }).kid !== 'string') {
    issues.push({
      key,
      message: 'the key needs a "kid" (it names the key to receivers and allows rotation)',
    });
    return undefined;
  }
  if (typeof d !== 'string') {
    issues.push({ key, message: 'the key is a public key; the flow needs the private JWK' });
    return undefined;
  }
  return jwk as JWK;
}

function readAllowlist(file: string, flow: FlowFile, issues: ConfigIssue[]): Allowlist | undefined {
  const key = 'stages.policy.allowlistFile';
  let list: Allowlist;
  try {
    list = loadAllowlist(file);
  } catch (err) {
    const detail = err instanceof SluiceError ? err.message.split('\n').slice(1).join('; ').trim() : '';
    issues.push({ key, message: detail ? `invalid allowlist: ${detail}` : `cannot read ${file}` });
    return undefined;
  }
  const recipient = flow.stages.consent?.recipient.id ?? flow.target.system;
  if (list.recipient !== recipient) {
    issues.push({ key, message: `the allowlist is for ${list.recipient}, the flow sends to ${recipient}` });
  }
  if (list.purpose !== flow.purpose) {
    issues.push({
      key,
      message: `the allowlist is for purpose ${list.purpose}, the flow's purpose is ${flow.purpose}`,
    });
  }
  return list;
}

function readJwks(file: string, issues: ConfigIssue[], key: string): { keys: JWK[] } | undefined {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    issues.push({ key, message: code ? `cannot read ${file} (${code})` : `${file} is not JSON` });
    return undefined;
  }
  const keys = (value as { keys?: unknown }).keys;
  if (!Array.isArray(keys) || keys.length === 0) {
    issues.push({ key, message: 'must be a JWKS: {"keys": [ ...public JWKs ]}' });
    return undefined;
  }
  if (keys.some((k) => typeof (k as { d?: unknown }).d === 'string')) {
    issues.push({ key, message: 'holds a private key; a verification set must contain public keys only' });
    return undefined;
  }
  return { keys: keys as JWK[] };
}

function decodeKey(value: string, issues: ConfigIssue[], key: string): Uint8Array | undefined {
  const trimmed = value.trim();
  let bytes: Buffer;
  if (/^[0-9a-fA-F]+$/.test(trimmed) && trimmed.length % 2 === 0) bytes = Buffer.from(trimmed, 'hex');
  else if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) bytes = Buffer.from(trimmed, 'base64');
  else {
    issues.push({ key, message: 'must be hex or base64' });
    return undefined;
  }
  if (bytes.length < MIN_PSEUDONYM_KEY_BYTES) {
    issues.push({
      key,
      message: `decodes to ${bytes.length} bytes; at least ${MIN_PSEUDONYM_KEY_BYTES} are required`,
    });
    return undefined;
  }
  return new Uint8Array(bytes);
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]?.slice(0, 200) ?? '';
}

function deepFreeze<T>(value: T): T {
  if (
    value &&
    typeof value === 'object' &&
    !Object.isFrozen(value) &&
    !(value instanceof Uint8Array) &&
    !(value instanceof Set)
  ) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
