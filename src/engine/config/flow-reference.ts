import { z } from 'zod';
import { FlowFileSchema } from './flow-schema.ts';

/**
 * The flow-file reference (docs/flow-file.md), rendered from the schema itself: every key with its
 * type, limits, default and description, so the document cannot drift from what `sluice flow check`
 * accepts.
 */

/** The part of JSON Schema that zod emits for the flow file. */
interface Node {
  readonly type?: string;
  readonly const?: unknown;
  readonly enum?: readonly unknown[];
  readonly description?: string;
  readonly default?: unknown;
  readonly pattern?: string;
  readonly format?: string;
  readonly minLength?: number;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly exclusiveMinimum?: number;
  readonly exclusiveMaximum?: number;
  readonly minItems?: number;
  readonly properties?: Readonly<Record<string, Node>>;
  readonly required?: readonly string[];
  readonly additionalProperties?: boolean | Node;
  readonly propertyNames?: Node;
  readonly items?: Node;
  readonly anyOf?: readonly Node[];
  readonly oneOf?: readonly Node[];
}

/** One documented key. */
export interface ReferenceRow {
  /** Dotted path; `[]` marks list items, `<name>` map keys. */
  readonly key: string;
  readonly type: string;
  /** `required`, `optional`, or the default in YAML-ish text. */
  readonly presence: string;
  readonly description: string;
  /** For keys of one variant of a union: the discriminator value it belongs to. */
  readonly when?: string;
}

export function flowSchemaJson(): Node {
  return z.toJSONSchema(FlowFileSchema, { io: 'input', unrepresentable: 'any' }) as Node;
}

const code = (value: unknown): string => `\`${typeof value === 'string' ? value : JSON.stringify(value)}\``;

function range(node: Node): string {
  const parts: string[] = [];
  if (node.exclusiveMinimum !== undefined) parts.push(`> ${node.exclusiveMinimum}`);
  if (node.minimum !== undefined) parts.push(`≥ ${node.minimum}`);
  if (node.exclusiveMaximum !== undefined) parts.push(`< ${node.exclusiveMaximum}`);
  if (node.maximum !== undefined) parts.push(`≤ ${node.maximum.toLocaleString('en-US')}`);
  return parts.join(', ');
}

/** The type of a value in words: `integer ≥ 1, ≤ 1,000`, one of `a` \| `b`, list of …, map of …. */
export function typeOf(node: Node): string {
  if (node.const !== undefined) return code(node.const);
  if (node.enum) return node.enum.map(code).join(' | ');
  const variants = node.anyOf ?? node.oneOf;
  if (variants && isKindUnion(variants)) return 'object, by `kind`';
  if (variants) {
    const nonNull = variants.filter((v) => v.type !== 'null');
    const text = nonNull.map(typeOf).join(' or ');
    return nonNull.length < variants.length ? `${text} or \`null\`` : text;
  }
  switch (node.type) {
    case 'string': {
      if (node.format === 'uri') return 'http(s) URL';
      if (node.pattern) return `text matching \`${node.pattern}\``;
      return 'text';
    }
    case 'integer':
    case 'number': {
      const limits = range(node);
      return limits === '' ? node.type : `${node.type} ${limits}`;
    }
    case 'boolean':
      return 'boolean';
    case 'array': {
      const items = node.items ? typeOf(node.items) : 'values';
      return node.minItems ? `list of ${items} (at least ${node.minItems})` : `list of ${items}`;
    }
    case 'object':
      if (typeof node.additionalProperties === 'object') {
        return `map of name → ${typeOf(node.additionalProperties)}`;
      }
      return 'object';
    default:
      return 'any';
  }
}

/** A union of objects told apart by a constant `kind`. */
function isKindUnion(variants: readonly Node[]): boolean {
  return variants.every((v) => v.type === 'object' && v.properties?.kind?.const !== undefined);
}

function presence(node: Node, required: boolean): string {
  if (node.default !== undefined) {
    const text = JSON.stringify(node.default);
    return text === '{}' || text.length > 40 ? 'has defaults' : `default ${code(node.default)}`;
  }
  return required ? 'required' : 'optional';
}

/** Every key of the schema, depth first, in the schema's order. */
export function referenceRows(root: Node = flowSchemaJson()): ReferenceRow[] {
  const rows: ReferenceRow[] = [];
  const visit = (node: Node, path: string, when: string | undefined): void => {
    const variants = node.oneOf ?? node.anyOf;
    if (variants && isKindUnion(variants)) {
      // A discriminated union on `kind`: the kinds in one row, each variant's keys marked with it.
      const kinds = variants.map((v) => v.properties?.kind?.const);
      rows.push({
        key: `${path}.kind`,
        type: kinds.map(code).join(' | '),
        presence: 'required',
        description: variants
          .map((v) => `${code(v.properties?.kind?.const)} — ${v.properties?.kind?.description ?? ''}`)
          .join(' '),
        ...(when === undefined ? {} : { when }),
      });
      for (const variant of variants) {
        const kind = `kind ${code(variant.properties?.kind?.const)}`;
        visitProperties(variant, path, kind);
      }
      return;
    }
    if (node.type === 'object' && node.properties) visitProperties(node, path, when);
    else if (node.type === 'object' && typeof node.additionalProperties === 'object') {
      visit(node.additionalProperties, `${path}.<name>`, when);
    } else if (node.type === 'array' && node.items) visit(node.items, `${path}[]`, when);
  };
  const visitProperties = (node: Node, path: string, when: string | undefined): void => {
    const required = new Set(node.required ?? []);
    for (const [name, child] of Object.entries(node.properties ?? {})) {
      if (name === 'kind' && node.properties?.kind?.const !== undefined && when?.startsWith('kind '))
        continue;
      const key = path === '' ? name : `${path}.${name}`;
      rows.push({
        key,
        type: typeOf(child),
        presence: presence(child, required.has(name)),
        description: child.description ?? '',
        ...(when === undefined ? {} : { when }),
      });
      visit(child, key, when);
    }
  };
  visit(root, '', undefined);
  return rows;
}

const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** docs/flow-file.md */
export function renderFlowFileReference(): string {
  const root = flowSchemaJson();
  const rows = referenceRows(root);
  const sections = new Map<string, ReferenceRow[]>();
  for (const row of rows) {
    const top = row.key.split(/[.[]/, 1)[0] ?? row.key;
    const section = rows.some((r) => r.key.startsWith(`${top}.`)) ? top : '';
    sections.set(section, [...(sections.get(section) ?? []), row]);
  }
  const lines = [
    '# Flow file reference',
    '',
    '<!-- Generated by `npm run docs` from src/engine/config/flow-schema.ts. Do not edit by hand. -->',
    '',
    'A flow file (YAML) says what moves from which source to which target, for what purpose, through',
    'which stages. Every key is listed here with its type, limits, default and meaning. Objects are',
    'strict: a misspelt key is an error, never a silently ignored setting. Values may reference the',
    'environment as `${VAR}` or `${VAR:-default}` (`$${` writes a literal `${`); file paths are relative',
    'to the flow file, `state.dir` to the working directory. `sluice flow check FLOW.yaml` validates a',
    'file and names every error by its key; `examples/flows/` holds complete flows.',
  ];
  for (const [section, sectionRows] of sections) {
    const title = section === '' ? 'Top level' : `\`${section}\``;
    lines.push('', `## ${title}`, '');
    const description = section === '' ? undefined : root.properties?.[section]?.description;
    if (description) lines.push(description, '');
    lines.push('| Key | Type | Presence | Meaning |', '| --- | --- | --- | --- |');
    for (const row of sectionRows) {
      if (row.key === section) continue;
      const meaning = row.when === undefined ? row.description : `(${row.when}) ${row.description}`;
      lines.push(`| \`${row.key}\` | ${cell(row.type)} | ${cell(row.presence)} | ${cell(meaning)} |`);
    }
  }
  return `${lines.join('\n')}\n`;
}
