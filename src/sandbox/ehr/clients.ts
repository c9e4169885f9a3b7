import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { importJWK, type JWK } from 'jose';
import { z } from 'zod';
import { SluiceError } from '../../core/errors/index.ts';
import { parseScopes } from './scopes.ts';

/** A SMART Backend Services client registered with the EHR sandbox. */
export interface RegisteredClient {
  readonly clientId: string;
  /** Public keys the client signs its assertions with (RS384 and/or ES384). */
  readonly jwks: { keys: JWK[] };
  /** The most the client may be granted, space-separated `system/` scopes. */
  readonly scope: string;
}

export const DEMO_CLIENT_ID = 'sluice-demo';
export const DEMO_CLIENT_SCOPE = 'system/*.read system/*.rs';

/** The demo keys shipped in the repository (`examples/keys/`). */
export const DEMO_KEYS_DIR = fileURLToPath(new URL('../../../examples/keys/', import.meta.url));

/** The demo client: id `sluice-demo`, the public JWKS in `examples/keys/ehr-client.jwks.json`, read-only scopes. */
export function demoClient(): RegisteredClient {
  const jwks = JSON.parse(readFileSync(resolve(DEMO_KEYS_DIR, 'ehr-client.jwks.json'), 'utf8')) as {
    keys: JWK[];
  };
  return { clientId: DEMO_CLIENT_ID, jwks, scope: DEMO_CLIENT_SCOPE };
}

export const SUPPORTED_ALGS = ['RS384', 'ES384'] as const;

const JwkSchema = z
  .looseObject({
    kty: z.enum(['RSA', 'EC'], { error: 'must be "RSA" or "EC"' }),
    kid: z.string().optional(),
    alg: z.enum(SUPPORTED_ALGS, { error: 'must be RS384 or ES384' }).optional(),
  })
  .refine((key) => !('d' in key), { message: 'must be a public key (it has a private "d" member)' });

const JwksSchema = z.object({ keys: z.array(JwkSchema).min(1, 'needs at least one key') });

const ScopeSchema = z.string().superRefine((text, ctx) => {
  const { scopes, invalid } = parseScopes(text);
  if (invalid.length > 0)
    ctx.addIssue({ code: 'custom', message: `not system/ scopes: ${invalid.join(' ')}` });
  else if (scopes.length === 0) ctx.addIssue({ code: 'custom', message: 'needs at least one system/ scope' });
});

const ClientEntrySchema = z
  .strictObject({
    clientId: z.string().min(1, 'must not be empty'),
    jwks: JwksSchema.optional(),
    jwksFile: z.string().min(1, 'must not be empty').optional(),
    scope: ScopeSchema,
  })
  .superRefine((entry, ctx) => {
    if ((entry.jwks === undefined) === (entry.jwksFile === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'give exactly one of "jwks" and "jwksFile"', path: ['jwks'] });
    }
  });

const ClientsFileSchema = z.array(ClientEntrySchema).min(1, 'needs at least one client');

/**
 * Loads `--clients FILE`: a JSON array of `{clientId, jwks | jwksFile, scope}`. `jwksFile` is resolved
 * against the file's folder. Every problem is reported at once, by dotted key (`[1].scope`).
 */
export async function loadClientsFile(path: string): Promise<RegisteredClient[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new SluiceError('CFG_FILE_MISSING', `Cannot read the clients file ${path}.`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new SluiceError('CFG_KEY_INVALID', `The clients file ${path} is not valid JSON.`);
  }
  const parsed = ClientsFileSchema.safeParse(doc);
  if (!parsed.success) throw invalid(path, parsed.error.issues.map(formatIssue));

  const problems: string[] = [];
  const clients: RegisteredClient[] = [];
  const indexes: number[] = [];
  for (const [index, entry] of parsed.data.entries()) {
    let jwks = entry.jwks as { keys: JWK[] } | undefined;
    if (entry.jwksFile !== undefined) {
      const file = resolve(dirname(path), entry.jwksFile);
      const loaded = await readJwksFile(file);
      if (typeof loaded === 'string') {
        problems.push(`[${index}].jwksFile: ${loaded}`);
        continue;
      }
      jwks = loaded;
    }
    if (!jwks) continue;
    clients.push({ clientId: entry.clientId, jwks, scope: entry.scope });
    indexes.push(index);
  }
  problems.push(...(await checkClients(clients, indexes)));
  if (problems.length > 0) throw invalid(path, problems);
  return clients;
}

/**
 * Checks registered clients (ids unique, keys importable for RS384/ES384, scopes valid) and returns the
 * problems; `indexes` gives each client's position in its file for the messages.
 */
export async function checkClients(
  clients: readonly RegisteredClient[],
  indexes: readonly number[] = clients.map((_, i) => i),
): Promise<string[]> {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const [position, client] of clients.entries()) {
    const index = indexes[position] ?? position;
    if (seen.has(client.clientId))
      problems.push(`[${index}].clientId: duplicate client id "${client.clientId}"`);
    seen.add(client.clientId);
    const scope = ScopeSchema.safeParse(client.scope);
    if (!scope.success) problems.push(...scope.error.issues.map((i) => `[${index}].scope: ${i.message}`));
    const keys = JwksSchema.safeParse(client.jwks);
    if (!keys.success) {
      problems.push(...keys.error.issues.map((i) => `[${index}].jwks${formatPath(i.path)}: ${i.message}`));
      continue;
    }
    for (const [k, key] of client.jwks.keys.entries()) {
      const alg = typeof key.alg === 'string' ? key.alg : key.kty === 'RSA' ? 'RS384' : 'ES384';
      try {
        await importJWK(key, alg);
      } catch {
        problems.push(`[${index}].jwks.keys[${k}]: not a usable ${alg} public key`);
      }
    }
  }
  return problems;
}

async function readJwksFile(file: string): Promise<{ keys: JWK[] } | string> {
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT'
      ? `${file} does not exist`
      : `${file} is not valid JSON`;
  }
  const parsed = JwksSchema.safeParse(doc);
  if (!parsed.success) {
    return `${file}: ${parsed.error.issues.map((i) => `keys${formatPath(i.path.slice(1))} ${i.message}`).join('; ')}`;
  }
  return parsed.data as { keys: JWK[] };
}

function invalid(path: string, problems: readonly string[]): SluiceError {
  return new SluiceError(
    'CFG_KEY_INVALID',
    `The clients file ${path} is invalid:\n  ${problems.join('\n  ')}`,
    {
      details: { file: path, problems: [...problems] },
    },
  );
}

function formatIssue(issue: z.core.$ZodIssue): string {
  const path = formatPath(issue.path);
  return `${path === '' ? '(root)' : path}: ${issue.message}`;
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
}
