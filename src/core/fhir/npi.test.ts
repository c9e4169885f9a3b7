import { join } from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { readResourceFile } from '../../adapters/files/resource-files.ts';
import { SAMPLE_DATA_DIR, sharedDataDir } from '../../testkit/data.ts';
import { isValidNpi, NPI_SYSTEM } from './npi.ts';
import { identifierValues, isJsonObject } from './resource.ts';

/** NPIs of a directory file of Practitioners (NDJSON), as written by Synthea. */
async function directoryNpis(file: string): Promise<string[]> {
  const out: string[] = [];
  for await (const item of readResourceFile(file)) {
    if (item.kind !== 'resource' || !isJsonObject(item.resource)) continue;
    out.push(...identifierValues(item.resource, NPI_SYSTEM));
  }
  return out;
}

describe('isValidNpi', () => {
  let npis: string[] = [];

  beforeAll(async () => {
    npis = await directoryNpis(join(SAMPLE_DATA_DIR, 'directory', 'Practitioner.ndjson.gz'));
    const shared = sharedDataDir();
    if (shared) {
      npis.push(...(await directoryNpis(join(shared, 'synthea', 'directory-v3', 'Practitioner.ndjson.gz'))));
    }
  });

  it('accepts every NPI of the real provider directory', () => {
    expect(npis.length).toBeGreaterThan(200);
    for (const npi of npis) expect(isValidNpi(npi), npi).toBe(true);
  });

  it('accepts the CMS worked example and rejects its neighbours', () => {
    // CMS "NPI check digit" example: 123456789 with prefix 80840 has check digit 3.
    expect(isValidNpi('1234567893')).toBe(true);
    for (let d = 0; d <= 9; d++) {
      if (d !== 3) expect(isValidNpi(`123456789${d}`)).toBe(false);
    }
  });

  it('rejects a wrong check digit on a real NPI', () => {
    const npi = npis[0] as string;
    const last = Number(npi.at(-1));
    expect(isValidNpi(`${npi.slice(0, 9)}${(last + 1) % 10}`)).toBe(false);
  });

  it('rejects wrong lengths, non-digits and padding', () => {
    const npi = npis[0] as string;
    for (const bad of [
      '',
      npi.slice(0, 9),
      `${npi}0`,
      `80840${npi}`,
      `${npi.slice(0, 4)}a${npi.slice(5)}`,
      ` ${npi}`,
      `${npi} `,
      `${npi.slice(0, 5)}-${npi.slice(5)}`,
      '１２３４５６７８９３', // full-width digits are not ASCII digits
      '-123456789',
      '1.23456789',
    ]) {
      expect(isValidNpi(bad), JSON.stringify(bad)).toBe(false);
    }
  });

  it('property: changing any single digit of a valid NPI invalidates it', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...npis),
        fc.integer({ min: 0, max: 9 }),
        fc.integer({ min: 1, max: 9 }),
        (npi, position, delta) => {
          const digit = (Number(npi[position]) + delta) % 10;
          const changed = `${npi.slice(0, position)}${digit}${npi.slice(position + 1)}`;
          expect(changed).not.toBe(npi);
          expect(isValidNpi(changed)).toBe(false);
        },
      ),
    );
  });

  it('property: exactly one check digit completes any nine-digit stem', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^\d{9}$/), (stem) => {
        const valid = [...'0123456789'].filter((d) => isValidNpi(`${stem}${d}`));
        expect(valid).toHaveLength(1);
      }),
    );
  });
});
