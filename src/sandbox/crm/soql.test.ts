import { describe, expect, it } from 'vitest';
import { parseSoql, positionOf, SoqlSyntaxError, tokenize } from './soql.ts';

function syntaxError(text: string): SoqlSyntaxError {
  try {
    parseSoql(text);
  } catch (err) {
    if (err instanceof SoqlSyntaxError) return err;
    throw err;
  }
  throw new Error(`expected a syntax error for: ${text}`);
}

describe('SOQL tokenizer', () => {
  it('tells date-times, dates, numbers, strings and paths apart', () => {
    const tokens = tokenize(
      "SELECT a.b FROM X WHERE d > 2024-01-01T00:00:00Z AND e = 2024-01-31 AND n <= -1.5 AND s <> 'it\\'s'",
    );
    expect(tokens.map((t) => [t.kind, t.text])).toEqual([
      ['ident', 'SELECT'],
      ['ident', 'a.b'],
      ['ident', 'FROM'],
      ['ident', 'X'],
      ['ident', 'WHERE'],
      ['ident', 'd'],
      ['op', '>'],
      ['datetime', '2024-01-01T00:00:00Z'],
      ['ident', 'AND'],
      ['ident', 'e'],
      ['op', '='],
      ['date', '2024-01-31'],
      ['ident', 'AND'],
      ['ident', 'n'],
      ['op', '<='],
      ['number', '-1.5'],
      ['ident', 'AND'],
      ['ident', 's'],
      ['op', '!='],
      ['string', "it's"],
      ['eof', '<EOF>'],
    ]);
  });

  it('rejects unterminated strings and stray characters with their position', () => {
    expect(() => tokenize("SELECT Id FROM A WHERE Name = 'open")).toThrow(SoqlSyntaxError);
    const err = syntaxError('SELECT Id FROM Account WHERE Name = "double"');
    expect(err.pos).toBe('SELECT Id FROM Account WHERE Name = '.length);
  });
});

describe('SOQL parser', () => {
  it('parses the change-capture shape', () => {
    const q = parseSoql(
      'select Id, Name, Account_vod__r.External_ID_vod__c from Address_vod__c where SystemModstamp > 2025-01-01T00:00:00Z and IsDeleted = false order by SystemModstamp asc, Id desc nulls last limit 500 offset 10',
    );
    expect(q.select.map((f) => f.path)).toEqual([['Id'], ['Name'], ['Account_vod__r', 'External_ID_vod__c']]);
    expect(q.from.name).toBe('Address_vod__c');
    expect(q.where).toMatchObject({
      kind: 'and',
      items: [
        { kind: 'compare', op: '>', value: { kind: 'datetime', ms: Date.parse('2025-01-01T00:00:00Z') } },
        { kind: 'compare', op: '=', value: { kind: 'boolean', value: false } },
      ],
    });
    expect(q.orderBy.map((o) => [o.field.text, o.descending, o.nullsFirst])).toEqual([
      ['SystemModstamp', false, true],
      ['Id', true, false],
    ]);
    expect(q.limit).toBe(500);
    expect(q.offset).toBe(10);
  });

  it('parses IN, NOT IN, NOT, null and parenthesised OR', () => {
    const q = parseSoql(
      "SELECT Id FROM Account WHERE (Phone = null OR Phone != null) AND NOT Name IN ('a', 'b') AND Gender_vod__c NOT IN ('M')",
    );
    expect(q.where).toMatchObject({
      kind: 'and',
      items: [
        { kind: 'or', items: [{ value: { kind: 'null' } }, { op: '!=' }] },
        { kind: 'not', item: { kind: 'in', negate: false } },
        { kind: 'in', negate: true },
      ],
    });
  });

  it.each([
    ['an empty WHERE', 'SELECT Id FROM Account WHERE', 'unexpected token: <EOF>'],
    [
      'AND and OR mixed without parentheses',
      'SELECT Id FROM A WHERE a = 1 AND b = 2 OR c = 3',
      'unexpected token: OR',
    ],
    ['a missing FROM', 'SELECT Id Account', 'unexpected token: Account'],
    ['an aggregate', 'SELECT COUNT() FROM Account', 'unexpected token: ('],
    ['GROUP BY', 'SELECT Id FROM Account GROUP BY Name', 'unexpected token: GROUP'],
    ['LIKE', "SELECT Id FROM Account WHERE Name LIKE 'A%'", 'unexpected token: LIKE'],
    ['a null range', 'SELECT Id FROM Account WHERE Name > null', 'unexpected token: null'],
    ['a trailing comma', 'SELECT Id, FROM Account', 'unexpected token: FROM'],
    ['a bad date-time', 'SELECT Id FROM A WHERE d > 2024-02-30T00:00:00Z', 'invalid date-time literal'],
    [
      'a string where a literal belongs but hidden',
      "SELECT Id FROM A WHERE 'x' = Name",
      'unexpected token: <string literal>',
    ],
  ])('rejects %s', (_case, text, detail) => {
    expect(syntaxError(text).detail).toContain(detail);
  });

  it('reports rows and columns like Salesforce', () => {
    const text = 'SELECT Id\nFROM Account\nWHERE';
    const err = syntaxError(text);
    expect(positionOf(text, err.pos)).toEqual({ row: 3, column: 6 });
  });
});
