import { isSluiceError, SluiceError } from '../errors/index.ts';
import { type AnonymizeContext, assertContext, MIN_HASH_SALT_BYTES } from './context.ts';
import type { Profile } from './profile.ts';
import { MIN_PSEUDONYM_KEY_BYTES } from './pseudonym.ts';
import { restrictedZip3Of } from './zip3-lists.ts';

/**
 * The anonymization context of a run outside any flow (`sluice anonymize`), from the environment only:
 * secrets never come from the command line, where shell history and process listings would keep them.
 *
 * - `SLUICE_PSEUDONYM_KEY` (hex or base64, >= 32 bytes) and `SLUICE_PSEUDONYM_KEY_ID` (default `default`);
 *   `SLUICE_PSEUDONYM_PREVIOUS_KEY` / `_ID` keep a rotated-out key usable by rules that pin it;
 * - `SLUICE_HASH_SALT` (hex or base64, >= 16 bytes) for `hash`;
 * - `SLUICE_PSEUDONYM_SYSTEM` (default `epic`): the pseudonym namespace, the source system's name in flows,
 *   so pseudonyms match what the flow sent.
 */
export const ENV = {
  key: 'SLUICE_PSEUDONYM_KEY',
  keyId: 'SLUICE_PSEUDONYM_KEY_ID',
  previousKey: 'SLUICE_PSEUDONYM_PREVIOUS_KEY',
  previousKeyId: 'SLUICE_PSEUDONYM_PREVIOUS_KEY_ID',
  salt: 'SLUICE_HASH_SALT',
  system: 'SLUICE_PSEUDONYM_SYSTEM',
} as const;

export function anonymizeContextFromEnv(
  profile: Profile,
  env: Readonly<Record<string, string | undefined>>,
  asOf: Date = new Date(),
): AnonymizeContext {
  const keys = [];
  const current = secret(env, ENV.key, MIN_PSEUDONYM_KEY_BYTES);
  const currentId = env[ENV.keyId]?.trim() || 'default';
  if (current) keys.push({ id: currentId, secret: current });
  const previous = secret(env, ENV.previousKey, MIN_PSEUDONYM_KEY_BYTES);
  if (previous) keys.push({ id: env[ENV.previousKeyId]?.trim() || 'previous', secret: previous });
  const salt = secret(env, ENV.salt, MIN_HASH_SALT_BYTES);
  const ctx: AnonymizeContext = {
    system: env[ENV.system]?.trim() || 'epic',
    asOf,
    ...(keys.length > 0 ? { keyring: { currentKeyId: currentId, keys } } : {}),
    ...(salt ? { hashSalt: salt } : {}),
    ...(profile.restrictedZip3.length > 0
      ? { restrictedZip3: restrictedZip3Of(profile.restrictedZip3) }
      : {}),
  };
  // Everything the profile's methods need is checked now, so a missing key fails before any output.
  try {
    assertContext(profile.ruleSet, ctx);
  } catch (err) {
    if (!isSluiceError(err)) throw err;
    throw new SluiceError(
      err.code,
      `${err.message} Outside a flow they come from the environment: ${ENV.key} (hex or base64, at least ${MIN_PSEUDONYM_KEY_BYTES} bytes), ${ENV.salt} (at least ${MIN_HASH_SALT_BYTES} bytes); never from the command line.`,
      { cause: err, details: err.details },
    );
  }
  return ctx;
}

/** Decodes a hex or base64 secret; undefined when unset; CFG_KEY_INVALID (naming the variable) when bad. */
function secret(
  env: Readonly<Record<string, string | undefined>>,
  name: string,
  minBytes: number,
): Uint8Array | undefined {
  const value = env[name]?.trim();
  if (value === undefined || value === '') return undefined;
  let bytes: Buffer;
  if (/^[0-9a-fA-F]+$/.test(value) && value.length % 2 === 0) bytes = Buffer.from(value, 'hex');
  else if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(value)) bytes = Buffer.from(value, 'base64');
  else {
    throw new SluiceError('CFG_KEY_INVALID', `${name} must be hex or base64.`, {
      details: { variable: name },
    });
  }
  if (bytes.length < minBytes) {
    throw new SluiceError(
      'CFG_KEY_INVALID',
      `${name} decodes to ${bytes.length} bytes; at least ${minBytes} are required.`,
      { details: { variable: name, bytes: bytes.length, minBytes } },
    );
  }
  return new Uint8Array(bytes);
}
