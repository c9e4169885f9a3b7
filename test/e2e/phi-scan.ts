import { listResourceFiles, readResourceFile } from '../../src/adapters/files/resource-files.ts';
import { asArray, isJsonObject, type JsonObject, str } from '../../src/core/fhir/resource.ts';

/** A patient's identifying values, each with the category it belongs to. */
export interface PatientPhi {
  readonly ref: string;
  readonly values: readonly { readonly category: string; readonly value: string }[];
}

/** Reads every Patient from seed files and lists the values that must never reach the CRM. */
export async function patientPhi(paths: readonly string[]): Promise<PatientPhi[]> {
  const out: PatientPhi[] = [];
  for (const file of await listResourceFiles(paths)) {
    for await (const item of readResourceFile(file)) {
      if (item.kind !== 'resource') continue;
      const r = item.resource;
      if (!isJsonObject(r) || r.resourceType !== 'Patient') continue;
      out.push({ ref: `Patient/${str(r.id)}`, values: phiOf(r) });
    }
  }
  return out;
}

function phiOf(p: JsonObject): { category: string; value: string }[] {
  const values: { category: string; value: string }[] = [];
  const add = (category: string, value: unknown): void => {
    const s = str(value)?.trim();
    if (s) values.push({ category, value: s });
  };
  add('id', p.id);
  for (const name of asArray(p.name).filter(isJsonObject)) {
    for (const part of [...asArray(name.given), ...asArray(name.prefix), ...asArray(name.suffix)])
      add('name', part);
    add('name', name.family);
    add('name', name.text);
  }
  for (const id of asArray(p.identifier).filter(isJsonObject)) add('identifier', id.value);
  for (const t of asArray(p.telecom).filter(isJsonObject)) {
    add(t.system === 'email' ? 'email' : 'phone', t.value);
    // Phones also in digits only, as a CRM might normalise them.
    if (t.system === 'phone' && typeof t.value === 'string') add('phone', t.value.replace(/\D/g, ''));
  }
  for (const a of asArray(p.address).filter(isJsonObject))
    for (const line of asArray(a.line)) add('street', line);
  const birth = str(p.birthDate);
  if (birth) {
    add('birthDate', birth);
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(birth);
    if (m) {
      add('birthDate', `${m[1]}${m[2]}${m[3]}`);
      add('birthDate', `${m[2]}/${m[3]}/${m[1]}`);
    }
  }
  // Tokens shorter than 4 characters (initials, "Mr.") would match unrelated text; they identify no one.
  return values.filter((v) => v.value.length >= 4);
}

/** The lower-case words of every non-Patient resource in the seed (what the CRM may legitimately hold). */
export async function directoryWords(paths: readonly string[]): Promise<Set<string>> {
  const words = new Set<string>();
  for (const file of await listResourceFiles(paths)) {
    for await (const item of readResourceFile(file)) {
      if (item.kind !== 'resource' || !isJsonObject(item.resource)) continue;
      if (item.resource.resourceType !== 'Organization' && item.resource.resourceType !== 'Practitioner')
        continue;
      for (const w of JSON.stringify(item.resource).toLowerCase().split(WORD_SPLIT)) words.add(w);
    }
  }
  return words;
}

const WORD_SPLIT = /[^\p{L}\p{N}'-]+/u;

/**
 * Every occurrence of a patient's PHI in a serialised corpus, as `category of ref` (no values). Names
 * match as whole words (a patient "Carin" is not leaked by an organisation "Caring", nor "Abdul" by a
 * practitioner "Abdul218"); identifiers, phones, e-mail, streets and dates match anywhere.
 * `allowedWords` are words the corpus may hold for another reason (a family name that is also the
 * name of a hospital in the provider directory); full names are always checked.
 */
export function findPhi(
  corpus: string,
  patients: readonly PatientPhi[],
  allowedWords: ReadonlySet<string> = new Set(),
): string[] {
  const haystack = corpus.toLowerCase();
  const words = new Set(haystack.split(WORD_SPLIT));
  const hits: string[] = [];
  for (const p of patients) {
    for (const v of p.values) {
      const needle = v.value.toLowerCase();
      const found =
        v.category === 'name' && !/\s/.test(needle)
          ? words.has(needle) && !allowedWords.has(needle)
          : haystack.includes(needle);
      if (found) hits.push(`${v.category} of ${p.ref}`);
    }
  }
  return hits;
}
