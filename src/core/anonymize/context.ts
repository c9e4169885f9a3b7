import { createHmac } from 'node:crypto';
import { SluiceError } from '../errors/index.ts';
import { asArray, isJsonObject, type JsonObject, parseReference } from '../fhir/resource.ts';
import type { Pseudonym } from '../model/ids.ts';
import type { ClassificationCache } from './classification-cache.ts';
import { hmacKey, MIN_PSEUDONYM_KEY_BYTES, type PseudonymKey, pseudonymize } from './pseudonym.ts';
import type { MethodName, MethodSpec, RuleSet } from './rules.ts';
import type { Tokenizer } from './vault.ts';

/** Keys by id; `currentKeyId` is used unless a rule pins another (key rotation keeps old keys readable). */
export interface PseudonymKeyring {
  readonly currentKeyId: string;
  readonly keys: readonly PseudonymKey[];
}

/** The restricted ZIP3 prefixes in force and the names of the lists they come from (recorded in audits). */
export interface RestrictedZip3 {
  readonly listIds: readonly string[];
  readonly prefixes: ReadonlySet<string>;
}

export interface ResourceRef {
  readonly resourceType: string;
  readonly id: string;
}

/** What a flow provides to the anonymizer; which parts are required depends on the methods its rule set uses. */
export interface AnonymizeContext {
  /** Name of the source system: the namespace of pseudonyms (`epic`). */
  readonly system: string;
  /** The date ages are computed on (ages over 89). */
  readonly asOf: Date;
  readonly keyring?: PseudonymKeyring;
  /** Per-flow salt for `hash` (at least 16 bytes). */
  readonly hashSalt?: Uint8Array;
  readonly tokenizer?: Tokenizer;
  readonly restrictedZip3?: RestrictedZip3;
  /** Bundle-local references (`urn:uuid:…`) and their targets; see `referenceIndex`. */
  readonly references?: ReadonlyMap<string, ResourceRef>;
  /** Element classifications reused across records (default: one cache for the process). */
  readonly classifications?: ClassificationCache;
}

export const MIN_HASH_SALT_BYTES = 16;

/** The `fullUrl → Type/id` map of a Bundle, so `urn:uuid:` references can be pseudonymised like literal ones. */
export function referenceIndex(bundle: unknown): Map<string, ResourceRef> {
  const out = new Map<string, ResourceRef>();
  if (!isJsonObject(bundle)) return out;
  for (const entry of asArray(bundle.entry)) {
    if (!isJsonObject(entry) || !isJsonObject(entry.resource)) continue;
    const { resourceType, id } = entry.resource;
    if (typeof entry.fullUrl !== 'string' || typeof resourceType !== 'string' || typeof id !== 'string')
      continue;
    out.set(entry.fullUrl, { resourceType, id });
  }
  return out;
}

/** The target of a literal or bundle-local reference; undefined for contained (`#x`) and unknown ones. */
export function resolveReference(reference: string, ctx: AnonymizeContext): ResourceRef | undefined {
  const local = ctx.references?.get(reference);
  if (local) return local;
  if (reference.startsWith('#') || reference.startsWith('urn:')) return undefined;
  return parseReference(reference);
}

export function keyFor(ctx: AnonymizeContext, keyId?: string): PseudonymKey {
  const wanted = keyId ?? ctx.keyring?.currentKeyId;
  const key = ctx.keyring?.keys.find((k) => k.id === wanted);
  if (!key) {
    throw new SluiceError('ANON_CONTEXT_INVALID', `No pseudonymisation key with id ${wanted ?? '(none)'}.`, {
      details: { keyId: wanted },
    });
  }
  return key;
}

/** The patient a resource is about (source id), from the patient compartment's usual references. */
export function personOf(resource: JsonObject, ctx: AnonymizeContext): string | undefined {
  if (resource.resourceType === 'Patient') return typeof resource.id === 'string' ? resource.id : undefined;
  const candidates: unknown[] = [resource.subject, resource.patient, resource.beneficiary];
  for (const participant of asArray(resource.participant)) {
    if (isJsonObject(participant)) candidates.push(participant.actor, participant.individual);
  }
  for (const candidate of candidates) {
    if (!isJsonObject(candidate) || typeof candidate.reference !== 'string') continue;
    const target = resolveReference(candidate.reference, ctx);
    if (target?.resourceType === 'Patient') return target.id;
  }
  return undefined;
}

/** The person's pseudonym under a key: the seed of per-person date shifts and noise. */
export function personPseudonym(ctx: AnonymizeContext, key: PseudonymKey, patientId: string): Pseudonym {
  return pseudonymize(key, ctx.system, 'Patient', patientId);
}

/** A uniform number in [0, 1) derived by HMAC from a label: deterministic per key, unpredictable without it. */
export function keyedUniform(key: PseudonymKey, label: string): number {
  const mac = createHmac('sha256', hmacKey(key)).update(label).digest();
  return mac.readUIntBE(0, 6) / 2 ** 48;
}

function methodsOf(ruleSet: RuleSet): MethodSpec[] {
  return [...Object.values(ruleSet.defaults), ...ruleSet.rules.map((r) => r.spec)];
}

const checked = new WeakMap<RuleSet, WeakSet<AnonymizeContext>>();

/**
 * Checks once per (rule set, context) that the context has everything the rule set's methods need,
 * so a missing key fails the run up front rather than every record.
 */
export function assertContext(ruleSet: RuleSet, ctx: AnonymizeContext): void {
  const seen = checked.get(ruleSet);
  if (seen?.has(ctx)) return;
  const problems: string[] = [];
  if (!(ctx.asOf instanceof Date) || Number.isNaN(ctx.asOf.getTime())) problems.push('asOf is not a date');
  if (ctx.system.trim() === '') problems.push('system is empty');
  const used = new Set<MethodName>();
  for (const spec of methodsOf(ruleSet)) {
    used.add(spec.method);
    const keyId = 'params' in spec && 'keyId' in spec.params ? spec.params.keyId : undefined;
    if (keyId !== undefined && !ctx.keyring?.keys.some((k) => k.id === keyId)) {
      problems.push(`no key ${keyId} in the keyring`);
    }
  }
  const needsKey = used.has('pseudonymize') || used.has('dateshift') || used.has('perturb');
  if (needsKey) {
    if (!ctx.keyring?.keys.some((k) => k.id === ctx.keyring?.currentKeyId)) {
      problems.push('a pseudonymisation keyring with its current key');
    }
    for (const key of ctx.keyring?.keys ?? []) {
      if (key.secret.byteLength < MIN_PSEUDONYM_KEY_BYTES)
        problems.push(`key ${key.id} is shorter than 32 bytes`);
    }
  }
  if (used.has('hash') && (ctx.hashSalt?.byteLength ?? 0) < MIN_HASH_SALT_BYTES) {
    problems.push('a hash salt of at least 16 bytes');
  }
  if (used.has('tokenize') && !ctx.tokenizer) problems.push('a token vault');
  if (used.has('generalize') && (!ctx.restrictedZip3 || ctx.restrictedZip3.listIds.length === 0)) {
    problems.push('a restricted ZIP3 list');
  }
  if (problems.length > 0) {
    throw new SluiceError('ANON_CONTEXT_INVALID', `Rule set ${ruleSet.id} needs: ${problems.join('; ')}.`, {
      details: { ruleSet: ruleSet.id, problems },
    });
  }
  const set = seen ?? new WeakSet<AnonymizeContext>();
  set.add(ctx);
  checked.set(ruleSet, set);
}
