import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { interpolate } from './interpolate.ts';

describe('interpolate', () => {
  it('replaces ${VAR} anywhere in a string, several times', () => {
    const { value, missing } = interpolate(
      { url: 'https://${HOST}:${PORT}/fhir', both: '${HOST}${HOST}' },
      { HOST: 'ehr.example.org', PORT: '8443' },
    );
    expect(value).toEqual({
      url: 'https://ehr.example.org:8443/fhir',
      both: 'ehr.example.orgehr.example.org',
    });
    expect(missing).toEqual([]);
  });

  it('uses ${VAR:-default} only when the variable is unset or empty', () => {
    const source = { a: '${A:-fallback}', b: '${B:-fallback}', c: '${C:-}', d: '${D:-a b:c/d}' };
    const { value, missing } = interpolate(source, { A: 'set', B: '' });
    expect(value).toEqual({ a: 'set', b: 'fallback', c: '', d: 'a b:c/d' });
    expect(missing).toEqual([]);
  });

  it('keeps $${VAR} as a literal ${VAR} and does not report it', () => {
    const { value, missing } = interpolate({ s: 'cost $${AMOUNT} and ${AMOUNT}' }, { AMOUNT: '5' });
    expect(value).toEqual({ s: 'cost ${AMOUNT} and 5' });
    expect(missing).toEqual([]);
    const unset = interpolate({ s: '$${NOPE}' }, {});
    expect(unset).toEqual({ value: { s: '${NOPE}' }, missing: [] });
  });

  it('does not re-interpolate substituted values (no injection through the environment)', () => {
    const { value, missing } = interpolate({ s: '${A}' }, { A: '${B}', B: 'secret' });
    expect(value).toEqual({ s: '${B}' });
    expect(missing).toEqual([]);
  });

  it('lists every missing variable with its dotted key, array indexes included', () => {
    const source = {
      source: { baseUrl: '${EHR_URL}', auth: { clientId: '${CLIENT}' } },
      list: ['ok', '${ONE}', { deep: ['${TWO} and ${THREE}'] }],
      top: '${TOP}',
    };
    const { value, missing } = interpolate(source, {});
    expect(missing).toEqual([
      { key: 'source.baseUrl', variable: 'EHR_URL' },
      { key: 'source.auth.clientId', variable: 'CLIENT' },
      { key: 'list[1]', variable: 'ONE' },
      { key: 'list[2].deep[0]', variable: 'TWO' },
      { key: 'list[2].deep[0]', variable: 'THREE' },
      { key: 'top', variable: 'TOP' },
    ]);
    expect(value).toEqual({
      source: { baseUrl: '', auth: { clientId: '' } },
      list: ['ok', '', { deep: [' and '] }],
      top: '',
    });
  });

  it('reports a missing variable in a top-level array and a top-level string', () => {
    expect(interpolate(['${X}'], {}).missing).toEqual([{ key: '[0]', variable: 'X' }]);
    expect(interpolate('${X}', {}).missing).toEqual([{ key: '', variable: 'X' }]);
  });

  it('leaves non-string values and non-references untouched', () => {
    const source = {
      n: 42,
      b: false,
      nil: null,
      list: [1, true, null],
      text: 'no refs: $HOME ${ not-a-name } ${1BAD} $ {X}',
    };
    const { value, missing } = interpolate(source, { HOME: '/root', X: 'x' });
    expect(value).toEqual(source);
    expect(missing).toEqual([]);
  });

  it('does not mutate its input', () => {
    const source = { a: '${A}', nested: ['${A}'] };
    const copy = structuredClone(source);
    interpolate(source, { A: 'x' });
    expect(source).toEqual(copy);
  });

  it('property: strings without "$" come back unchanged', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (json) => {
        const clean = JSON.parse(JSON.stringify(json).replaceAll('$', '')) as unknown;
        const { value, missing } = interpolate(clean, {});
        expect(value).toEqual(clean);
        expect(missing).toEqual([]);
      }),
    );
  });
});
