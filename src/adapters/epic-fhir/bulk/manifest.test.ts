import { describe, expect, it } from 'vitest';
import { SluiceError } from '../../../core/errors/index.ts';
import { deletedEntries, outcomeIssueCodes, parseManifest } from './manifest.ts';

const STATUS = 'https://ehr.example.org/fhir/bulkstatus/42';

const valid = {
  transactionTime: '2026-11-23T10:00:00+01:00',
  request: 'https://ehr.example.org/fhir/$export?_type=Patient',
  requiresAccessToken: true,
  output: [
    { type: 'Patient', url: 'https://ehr.example.org/files/p1.ndjson', count: 2, extension: { x: 1 } },
    { type: 'Patient', url: '/files/p2.ndjson' },
  ],
  error: [],
};

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof SluiceError ? err.code : 'not a SluiceError';
  }
  return undefined;
}

describe('parseManifest', () => {
  it('keeps transactionTime verbatim, resolves relative URLs and defaults the optional lists', () => {
    const manifest = parseManifest(valid, STATUS);
    expect(manifest.transactionTime).toBe('2026-11-23T10:00:00+01:00');
    expect(manifest.output).toEqual([
      { type: 'Patient', url: 'https://ehr.example.org/files/p1.ndjson', count: 2 },
      { type: 'Patient', url: 'https://ehr.example.org/files/p2.ndjson' },
    ]);
    expect(manifest.deleted).toEqual([]);
    expect(manifest.error).toEqual([]);
  });

  it.each([
    ['a date without time', { transactionTime: '2026-11-23' }],
    ['an impossible instant', { transactionTime: '2026-13-45T99:00:00Z' }],
    ['requiresAccessToken as a string', { requiresAccessToken: 'true' }],
    ['a negative count', { output: [{ type: 'Patient', url: '/f', count: -1 }] }],
    ['a file without url', { output: [{ type: 'Patient' }] }],
    ['a type that is not a resource type', { output: [{ type: 'patient; drop', url: '/f' }] }],
    ['no output', { output: undefined }],
  ])('refuses %s with SRC_BAD_RESPONSE', (_what, change) => {
    expect(codeOf(() => parseManifest({ ...valid, ...change }, STATUS))).toBe('SRC_BAD_RESPONSE');
  });

  it('refuses a body that is not an object', () => {
    expect(codeOf(() => parseManifest('<html>', STATUS))).toBe('SRC_BAD_RESPONSE');
    expect(codeOf(() => parseManifest(undefined, STATUS))).toBe('SRC_BAD_RESPONSE');
  });
});

describe('deletedEntries', () => {
  it('reads relative, absolute and versioned DELETE urls and counts what it cannot use', () => {
    const found = deletedEntries({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { request: { method: 'DELETE', url: 'Patient/a1' } },
        { request: { method: 'DELETE', url: 'https://ehr.example.org/fhir/Patient/a2/_history/3' } },
        { request: { method: 'DELETE', url: 'Patient?identifier=x' } },
        { request: { method: 'PUT', url: 'Patient/a3' } },
        { request: { method: 'DELETE', url: 'Patient/a4' }, response: { lastModified: 'yesterday' } },
        'junk',
      ],
    });
    expect(found.entries).toEqual([
      { resourceType: 'Patient', id: 'a1' },
      { resourceType: 'Patient', id: 'a2' },
      { resourceType: 'Patient', id: 'a4' },
    ]);
    expect(found.skipped).toBe(3);
    expect(deletedEntries({ resourceType: 'Patient' })).toEqual({ entries: [], skipped: 1 });
  });
});

describe('outcomeIssueCodes', () => {
  it('keeps severity and code only, replacing anything that is not a code', () => {
    expect(
      outcomeIssueCodes({
        resourceType: 'OperationOutcome',
        issue: [
          { severity: 'error', code: 'not-found', diagnostics: 'Patient Jane Roe not found' },
          { severity: 'warning', code: 'Jane Roe' },
        ],
      }),
    ).toEqual(['error:not-found', 'warning:unknown']);
    expect(outcomeIssueCodes({ resourceType: 'Patient' })).toEqual(['unreadable']);
    expect(outcomeIssueCodes({ resourceType: 'OperationOutcome', issue: [] })).toEqual(['no-issue']);
  });
});
