/**
 * Global setup of the test suite: every Sluice logger in the suite (in-process and in spawned CLI
 * processes) also writes its lines, at debug level, to one file; at the end that file is scanned for
 * the identifiers of every test patient (names, ids, identifiers, phones, e-mail, streets, birth
 * dates). Any hit fails the run, naming only the kind of identifier and how often.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SAMPLE_DATA_DIR, sharedDataDir } from '../src/testkit/data.ts';
import { findPhi, patientPhi } from './e2e/phi-scan.ts';

let dir = '';

export function setup(): void {
  dir = mkdtempSync(join(tmpdir(), 'sluice-test-logs-'));
  process.env.SLUICE_LOG_FILE = join(dir, 'suite.ndjson');
}

export async function teardown(): Promise<void> {
  const file = process.env.SLUICE_LOG_FILE as string;
  try {
    if (!existsSync(file)) {
      // A subset of tests that logged nothing (the whole suite always logs: the demo runs at debug).
      process.stderr.write('log scan: no Sluice log lines were written by these tests\n');
      return;
    }
    const text = readFileSync(file, 'utf8');
    const lines = text.split('\n').filter(Boolean).length;
    const shared = sharedDataDir();
    const seeds = [join(SAMPLE_DATA_DIR, 'synthea'), ...(shared ? [join(shared, 'synthea', 'bundles')] : [])];
    const hits = findPhi(text, await patientPhi(seeds));
    if (hits.length > 0) {
      const kinds = new Map<string, number>();
      for (const h of hits) {
        const kind = h.split(' of ')[0] as string;
        kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
      }
      throw new Error(
        `patient identifiers found in the ${lines} log lines written by the suite: ${[...kinds].map(([k, n]) => `${k} ×${n}`).join(', ')}`,
      );
    }
    process.stderr.write(`log scan: ${lines} log lines from the whole suite, no patient identifier found\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
