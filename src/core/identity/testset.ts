import { prng } from '../consent/synthetic.ts';
import type { Hcp, PostalAddress } from '../model/canonical.ts';
import type { Person } from '../model/entities.ts';
import { asMrn, asSourceId, asSystemName } from '../model/ids.ts';
import { type IdentityRecord, identityFromHcp, identityFromPerson } from './match.ts';

/**
 * A labelled identity test set built from real (Synthea) people with realistic noise: typos, swapped
 * names, changed phones, moved addresses, twins with the same birth date, an HCP with two NPIs over
 * time. `truth` says which records are the same person; the resolver never sees it.
 */

export interface LabelledRecord {
  readonly record: IdentityRecord;
  readonly truth: string;
  readonly noise: string;
}

const CLINIC = asSystemName('clinic');
const CLINIC_MRN = 'urn:example:clinic:mrn';

function typo(value: string, rand: () => number): string {
  if (value.length < 4) return `${value}${value.at(-1) ?? 'a'}`;
  const i = 1 + Math.floor(rand() * (value.length - 2));
  const kind = Math.floor(rand() * 3);
  if (kind === 0) return value.slice(0, i) + value.slice(i + 1); // deletion
  if (kind === 1) return value.slice(0, i) + (value[i + 1] ?? '') + value[i] + value.slice(i + 2); // transposition
  const letters = 'aeioulnrst';
  return value.slice(0, i) + (letters[Math.floor(rand() * letters.length)] ?? 'e') + value.slice(i + 1);
}

function variant(person: Person, id: string, changes: Partial<Person>): Person {
  return {
    ...person,
    source: { ...person.source, system: CLINIC, id: asSourceId(id) },
    mrns: [{ system: CLINIC_MRN, value: asMrn(`C${id}`) }],
    ...changes,
  } as Person;
}

function movedAddress(rand: () => number): PostalAddress {
  const n = 10 + Math.floor(rand() * 9000);
  const zip = String(10000 + Math.floor(rand() * 89999));
  return {
    use: 'home',
    lines: [`${n} Relocation Way`],
    city: 'Springfield',
    state: 'MA',
    postalCode: zip,
    country: 'US',
  };
}

function phone(rand: () => number): string {
  return `+1617${String(2000000 + Math.floor(rand() * 7999999))}`;
}

/** Builds the set from mapped Synthea persons and directory HCPs (deterministic for a seed). */
export function buildIdentityTestSet(
  persons: readonly Person[],
  hcps: readonly Hcp[],
  seed = 20_251_123,
): LabelledRecord[] {
  const rand = prng(seed);
  const out: LabelledRecord[] = [];
  const givenPool = persons.map((p) => p.givenNames[0]).filter((g): g is string => g !== undefined);
  persons.forEach((person, i) => {
    const truth = `patient:${i}`;
    out.push({ record: identityFromPerson(person), truth, noise: 'original' });
    const given = person.givenNames[0] ?? 'Alex';
    const family = person.familyName ?? 'Doe';
    const kinds = ['typo', 'swapped', 'moved', 'phone-changed'];
    const pick = kinds[i % kinds.length] as string;
    const v = `${i}-${pick}`;
    switch (pick) {
      case 'typo':
        out.push({
          record: identityFromPerson(variant(person, v, { familyName: typo(family, rand) })),
          truth,
          noise: pick,
        });
        break;
      case 'swapped':
        out.push({
          record: identityFromPerson(
            variant(person, v, { givenNames: [family], familyName: given, phones: [] }),
          ),
          truth,
          noise: pick,
        });
        break;
      case 'moved':
        out.push({
          record: identityFromPerson(
            variant(person, v, { addresses: [movedAddress(rand)], phones: [phone(rand)] }),
          ),
          truth,
          noise: pick,
        });
        break;
      default:
        out.push({
          record: identityFromPerson(
            variant(person, v, { phones: [phone(rand)], givenNames: [typo(given, rand)] }),
          ),
          truth,
          noise: pick,
        });
    }
    if (i % 4 === 1) {
      // A twin: same family name, birth date, home and phone; a different first name and chart.
      const twinGiven = givenPool.find((g) => g[0] !== given[0] && g.length > 3) ?? 'Morgan';
      const twin: Person = {
        ...person,
        source: { ...person.source, id: asSourceId(`${String(person.source.id)}-twin`) },
        mrns: person.mrns.map((m) => ({ ...m, value: asMrn(`${m.value}-T`) })),
        givenNames: [twinGiven],
      };
      out.push({ record: identityFromPerson(twin), truth: `${truth}:twin`, noise: 'twin' });
      // The twin seen at the clinic too: no shared MRN system, only the household data to go on.
      out.push({
        record: identityFromPerson(variant(twin, `${i}-twin`, {})),
        truth: `${truth}:twin`,
        noise: 'twin-at-clinic',
      });
    }
  });
  hcps.forEach((hcp, i) => {
    const truth = `hcp:${i}`;
    out.push({ record: identityFromHcp(hcp), truth, noise: 'original' });
    const crm = { ...hcp, source: { ...hcp.source, system: asSystemName('veeva'), resourceType: 'Account' } };
    if (i === 0 && hcp.npi !== undefined) {
      // Two NPIs over time: the CRM holds the new NPI and lists the old one as replaced.
      const replacement = { ...crm, npi: '1245319599' as Hcp['npi'] } as Hcp;
      out.push({ record: identityFromHcp(replacement, [hcp.npi]), truth, noise: 'new-npi-with-history' });
      const noHistory = {
        ...replacement,
        source: { ...replacement.source, id: asSourceId(`${String(hcp.source.id)}-b`) },
      };
      out.push({ record: identityFromHcp(noHistory), truth, noise: 'new-npi-no-history' });
    } else {
      out.push({ record: identityFromHcp(crm as Hcp), truth, noise: 'crm-copy' });
    }
  });
  return out;
}

export interface IdentityMetrics {
  readonly records: number;
  readonly truePairs: number;
  readonly predictedPairs: number;
  readonly correctPairs: number;
  readonly precision: number;
  readonly recall: number;
  /** Pairs of different people put in one cluster (must be 0). */
  readonly falseMerges: number;
  readonly reviewRequested: number;
  readonly linksByMethod: Readonly<Record<string, number>>;
}

/** Pairwise precision and recall of a clustering against the truth labels. */
export function scoreClusters(
  set: readonly LabelledRecord[],
  personOf: (key: string) => string | undefined,
): Omit<IdentityMetrics, 'reviewRequested' | 'linksByMethod'> {
  let truePairs = 0;
  let predictedPairs = 0;
  let correct = 0;
  for (let i = 0; i < set.length; i++) {
    for (let j = i + 1; j < set.length; j++) {
      const a = set[i] as LabelledRecord;
      const b = set[j] as LabelledRecord;
      const same = a.truth === b.truth;
      const linked =
        personOf(a.record.key) !== undefined && personOf(a.record.key) === personOf(b.record.key);
      if (same) truePairs++;
      if (linked) predictedPairs++;
      if (same && linked) correct++;
    }
  }
  return {
    records: set.length,
    truePairs,
    predictedPairs,
    correctPairs: correct,
    precision: predictedPairs === 0 ? 1 : correct / predictedPairs,
    recall: truePairs === 0 ? 1 : correct / truePairs,
    falseMerges: predictedPairs - correct,
  };
}
