import { parseDate, parseDatetime } from './values.ts';

/**
 * The SOQL subset an integration uses for change capture, parsed properly:
 *
 *   SELECT path [, path …] FROM Object
 *     [WHERE condition] [ORDER BY path [ASC|DESC] [NULLS FIRST|LAST] [, …]] [LIMIT n] [OFFSET n]
 *
 * A path is a field or a parent relationship path (`Account_vod__r.External_ID_vod__c`). Conditions
 * are comparisons (`= != <> < <= > >=`) and `[NOT] IN (…)` against literals, combined with AND or OR
 * (mixing them needs parentheses, as in SOQL) and NOT. Literals: 'strings', numbers, true/false,
 * null, dates (2024-01-31) and date-times (2024-01-31T00:00:00Z), unquoted. Anything else is a
 * `SoqlSyntaxError` carrying the position, which the route answers as MALFORMED_QUERY.
 */

export type TokenKind = 'ident' | 'string' | 'number' | 'date' | 'datetime' | 'op' | 'punct' | 'eof';

export interface Token {
  readonly kind: TokenKind;
  readonly text: string;
  /** Offset in the query text. */
  readonly pos: number;
}

export class SoqlSyntaxError extends Error {
  override readonly name = 'SoqlSyntaxError';
  readonly pos: number;
  readonly detail: string;

  constructor(pos: number, detail: string) {
    super(detail);
    this.pos = pos;
    this.detail = detail;
  }
}

export interface FieldPath {
  readonly path: readonly string[];
  readonly text: string;
  readonly pos: number;
}

export type Literal =
  | { readonly kind: 'string'; readonly value: string; readonly pos: number }
  | { readonly kind: 'number'; readonly value: number; readonly pos: number }
  | { readonly kind: 'boolean'; readonly value: boolean; readonly pos: number }
  | { readonly kind: 'null'; readonly pos: number }
  | { readonly kind: 'date'; readonly value: string; readonly pos: number }
  | { readonly kind: 'datetime'; readonly ms: number; readonly pos: number };

export type CompareOp = '=' | '!=' | '<' | '<=' | '>' | '>=';

export type Condition =
  | { readonly kind: 'and' | 'or'; readonly items: readonly Condition[] }
  | { readonly kind: 'not'; readonly item: Condition }
  | { readonly kind: 'compare'; readonly field: FieldPath; readonly op: CompareOp; readonly value: Literal }
  | {
      readonly kind: 'in';
      readonly field: FieldPath;
      readonly negate: boolean;
      readonly values: readonly Literal[];
    };

export interface OrderItem {
  readonly field: FieldPath;
  readonly descending: boolean;
  readonly nullsFirst: boolean;
}

export interface SoqlQuery {
  readonly select: readonly FieldPath[];
  readonly from: { readonly name: string; readonly pos: number };
  readonly where?: Condition;
  readonly orderBy: readonly OrderItem[];
  readonly limit?: number;
  readonly offset?: number;
}

const RESERVED = new Set([
  'select',
  'from',
  'where',
  'and',
  'or',
  'not',
  'in',
  'order',
  'by',
  'limit',
  'offset',
  'asc',
  'desc',
  'nulls',
  'first',
  'last',
  'null',
  'true',
  'false',
  'like',
  'group',
  'having',
  'with',
  'for',
  'using',
  'includes',
  'excludes',
  'typeof',
]);

const DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:\d{2})/;
const DATE = /^\d{4}-\d{2}-\d{2}(?![\dT])/;
const NUMBER = /^[+-]?\d+(?:\.\d+)?(?![\w.])/;
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*/;
const OPS = ['<=', '>=', '!=', '<>', '=', '<', '>'];
const ESCAPES: Record<string, string> = {
  n: '\n',
  r: '\r',
  t: '\t',
  b: '\b',
  f: '\f',
  "'": "'",
  '"': '"',
  '\\': '\\',
  _: '\\_',
  '%': '\\%',
};

export function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text.charAt(i);
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const rest = text.slice(i);
    if (c === "'") {
      let value = '';
      let j = i + 1;
      for (;;) {
        if (j >= text.length) throw new SoqlSyntaxError(i, 'unterminated string literal');
        const ch = text.charAt(j);
        if (ch === "'") break;
        if (ch === '\\') {
          const escaped = ESCAPES[text.charAt(j + 1)];
          if (escaped === undefined)
            throw new SoqlSyntaxError(j, 'invalid escape sequence in string literal');
          value += escaped;
          j += 2;
          continue;
        }
        value += ch;
        j++;
      }
      tokens.push({ kind: 'string', text: value, pos: i });
      i = j + 1;
      continue;
    }
    const match =
      matchToken(rest, DATETIME, 'datetime') ??
      matchToken(rest, DATE, 'date') ??
      matchToken(rest, NUMBER, 'number') ??
      matchToken(rest, IDENT, 'ident');
    if (match) {
      tokens.push({ kind: match.kind, text: match.text, pos: i });
      i += match.text.length;
      continue;
    }
    const op = OPS.find((o) => rest.startsWith(o));
    if (op) {
      tokens.push({ kind: 'op', text: op === '<>' ? '!=' : op, pos: i });
      i += op.length;
      continue;
    }
    if (c === ',' || c === '(' || c === ')') {
      tokens.push({ kind: 'punct', text: c, pos: i });
      i++;
      continue;
    }
    throw new SoqlSyntaxError(i, `unexpected character: ${c}`);
  }
  tokens.push({ kind: 'eof', text: '<EOF>', pos: text.length });
  return tokens;
}

function matchToken(
  rest: string,
  pattern: RegExp,
  kind: TokenKind,
): { kind: TokenKind; text: string } | undefined {
  const m = pattern.exec(rest);
  return m ? { kind, text: m[0] } : undefined;
}

export function parseSoql(text: string): SoqlQuery {
  return new Parser(tokenize(text)).query();
}

/** 1-based row and column of an offset, as Salesforce reports query errors. */
export function positionOf(text: string, pos: number): { row: number; column: number } {
  const before = text.slice(0, pos);
  const lines = before.split('\n');
  return { row: lines.length, column: (lines[lines.length - 1] ?? '').length + 1 };
}

class Parser {
  readonly #tokens: readonly Token[];
  #i = 0;

  constructor(tokens: readonly Token[]) {
    this.#tokens = tokens;
  }

  #peek(): Token {
    return this.#tokens[this.#i] ?? this.#tokens[this.#tokens.length - 1]!;
  }

  #next(): Token {
    const token = this.#peek();
    if (token.kind !== 'eof') this.#i++;
    return token;
  }

  #isKeyword(word: string): boolean {
    const token = this.#peek();
    return token.kind === 'ident' && token.text.toLowerCase() === word;
  }

  #acceptKeyword(word: string): boolean {
    if (!this.#isKeyword(word)) return false;
    this.#i++;
    return true;
  }

  #expectKeyword(word: string): void {
    if (!this.#acceptKeyword(word)) this.#unexpected();
  }

  #acceptPunct(p: string): boolean {
    const token = this.#peek();
    if (token.kind !== 'punct' || token.text !== p) return false;
    this.#i++;
    return true;
  }

  #expectPunct(p: string): void {
    if (!this.#acceptPunct(p)) this.#unexpected();
  }

  #unexpected(): never {
    const token = this.#peek();
    const shown = token.kind === 'string' ? '<string literal>' : token.text;
    throw new SoqlSyntaxError(token.pos, `unexpected token: ${shown}`);
  }

  query(): SoqlQuery {
    this.#expectKeyword('select');
    const select = [this.#field()];
    while (this.#acceptPunct(',')) select.push(this.#field());
    this.#expectKeyword('from');
    const fromToken = this.#next();
    if (
      fromToken.kind !== 'ident' ||
      RESERVED.has(fromToken.text.toLowerCase()) ||
      fromToken.text.includes('.')
    ) {
      this.#i--;
      this.#unexpected();
    }
    let where: Condition | undefined;
    if (this.#acceptKeyword('where')) where = this.#condition();
    const orderBy: OrderItem[] = [];
    if (this.#acceptKeyword('order')) {
      this.#expectKeyword('by');
      do orderBy.push(this.#orderItem());
      while (this.#acceptPunct(','));
    }
    const limit = this.#acceptKeyword('limit') ? this.#count() : undefined;
    const offset = this.#acceptKeyword('offset') ? this.#count() : undefined;
    if (this.#peek().kind !== 'eof') this.#unexpected();
    return {
      select,
      from: { name: fromToken.text, pos: fromToken.pos },
      ...(where ? { where } : {}),
      orderBy,
      ...(limit !== undefined ? { limit } : {}),
      ...(offset !== undefined ? { offset } : {}),
    };
  }

  #field(): FieldPath {
    const token = this.#peek();
    if (token.kind !== 'ident' || RESERVED.has(token.text.toLowerCase())) this.#unexpected();
    this.#i++;
    return { path: token.text.split('.'), text: token.text, pos: token.pos };
  }

  #count(): number {
    const token = this.#peek();
    if (token.kind !== 'number' || !/^\d+$/.test(token.text)) this.#unexpected();
    this.#i++;
    return Number(token.text);
  }

  #orderItem(): OrderItem {
    const field = this.#field();
    const descending = this.#acceptKeyword('desc');
    if (!descending) this.#acceptKeyword('asc');
    let nullsFirst = !descending;
    if (this.#acceptKeyword('nulls')) {
      if (this.#acceptKeyword('first')) nullsFirst = true;
      else if (this.#acceptKeyword('last')) nullsFirst = false;
      else this.#unexpected();
    }
    return { field, descending, nullsFirst };
  }

  #condition(): Condition {
    const items = [this.#unary()];
    let connective: 'and' | 'or' | undefined;
    for (;;) {
      const word = this.#isKeyword('and') ? 'and' : this.#isKeyword('or') ? 'or' : undefined;
      if (!word) break;
      if (connective && connective !== word) this.#unexpected();
      connective = word;
      this.#i++;
      items.push(this.#unary());
    }
    return connective && items.length > 1 ? { kind: connective, items } : items[0]!;
  }

  #unary(): Condition {
    if (this.#acceptKeyword('not')) return { kind: 'not', item: this.#unary() };
    if (this.#acceptPunct('(')) {
      const inner = this.#condition();
      this.#expectPunct(')');
      return inner;
    }
    const field = this.#field();
    const negate = this.#acceptKeyword('not');
    if (negate || this.#isKeyword('in')) {
      this.#expectKeyword('in');
      this.#expectPunct('(');
      const values = [this.#literal()];
      while (this.#acceptPunct(',')) values.push(this.#literal());
      this.#expectPunct(')');
      return { kind: 'in', field, negate, values };
    }
    const op = this.#peek();
    if (op.kind !== 'op') this.#unexpected();
    this.#i++;
    const value = this.#literal();
    if (value.kind === 'null' && op.text !== '=' && op.text !== '!=') {
      throw new SoqlSyntaxError(value.pos, 'unexpected token: null');
    }
    return { kind: 'compare', field, op: op.text as CompareOp, value };
  }

  #literal(): Literal {
    const token = this.#next();
    const pos = token.pos;
    switch (token.kind) {
      case 'string':
        return { kind: 'string', value: token.text, pos };
      case 'number':
        return { kind: 'number', value: Number(token.text), pos };
      case 'date': {
        const value = parseDate(token.text);
        if (value === undefined) throw new SoqlSyntaxError(pos, 'invalid date literal');
        return { kind: 'date', value, pos };
      }
      case 'datetime': {
        const ms = parseDatetime(token.text);
        if (ms === undefined) throw new SoqlSyntaxError(pos, 'invalid date-time literal');
        return { kind: 'datetime', ms, pos };
      }
      case 'ident': {
        const word = token.text.toLowerCase();
        if (word === 'true' || word === 'false') return { kind: 'boolean', value: word === 'true', pos };
        if (word === 'null') return { kind: 'null', pos };
        break;
      }
      case 'op':
      case 'punct':
      case 'eof':
        break;
    }
    this.#i -= token.kind === 'eof' ? 0 : 1;
    return this.#unexpected();
  }
}
