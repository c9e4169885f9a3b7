/**
 * SMART on FHIR `system/` scopes, v1 (`system/Patient.read`, `.write`, `.*`) and v2
 * (`system/Patient.rs`, `.cruds`). Pure functions: parsing, granting the part of a request a client
 * is allowed, and deciding whether a token's scopes cover an interaction (returning the scope that did).
 */

/** SMART v2 permissions: create, read, update, delete, search. */
export type Permission = 'c' | 'r' | 'u' | 'd' | 's';

const ORDER: readonly Permission[] = ['c', 'r', 'u', 'd', 's'];

export interface SmartScope {
  /** The scope as granted, e.g. `system/Patient.read`. */
  readonly text: string;
  /** A resource type or `*`. */
  readonly resourceType: string;
  readonly permissions: ReadonlySet<Permission>;
  /** Which syntax the scope was written in (v1 `.read`/`.write`/`.*`, v2 `.cruds`). */
  readonly syntax: 'v1' | 'v2';
}

const SCOPE = /^system\/(\*|[A-Z][A-Za-z]{0,63})\.(read|write|\*|c?r?u?d?s?)$/;

/** Parses one `system/` scope; anything else (patient/user scopes, v2 query suffixes, typos) gives undefined. */
export function parseScope(text: string): SmartScope | undefined {
  const match = SCOPE.exec(text);
  if (!match) return undefined;
  const [, resourceType = '', suffix = ''] = match;
  if (suffix === '') return undefined;
  switch (suffix) {
    case 'read':
      return { text, resourceType, permissions: new Set(['r', 's']), syntax: 'v1' };
    case 'write':
      return { text, resourceType, permissions: new Set(['c', 'u', 'd']), syntax: 'v1' };
    case '*':
      return { text, resourceType, permissions: new Set(ORDER), syntax: 'v1' };
    default:
      return { text, resourceType, permissions: new Set([...suffix] as Permission[]), syntax: 'v2' };
  }
}

/** Splits a space-separated scope string; `invalid` lists the words that are not `system/` scopes. */
export function parseScopes(text: string): { scopes: SmartScope[]; invalid: string[] } {
  const scopes: SmartScope[] = [];
  const invalid: string[] = [];
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const scope = parseScope(word);
    if (scope) scopes.push(scope);
    else invalid.push(word);
  }
  return { scopes, invalid };
}

/** Writes a scope in the syntax asked for when that syntax can express the permissions, else in v2. */
export function formatScope(
  resourceType: string,
  permissions: ReadonlySet<Permission>,
  syntax: 'v1' | 'v2',
): string {
  const letters = ORDER.filter((p) => permissions.has(p)).join('');
  if (syntax === 'v1') {
    if (letters === 'rs') return `system/${resourceType}.read`;
    if (letters === 'cud') return `system/${resourceType}.write`;
    if (letters === 'cruds') return `system/${resourceType}.*`;
  }
  return `system/${resourceType}.${letters}`;
}

/**
 * The scopes to grant for a token request: each requested scope narrowed to what some allowed scope
 * covers (type and permissions intersected). An absent or empty request grants everything allowed.
 */
export function grantScopes(requested: string | undefined, allowed: readonly SmartScope[]): SmartScope[] {
  if (requested === undefined || requested.trim() === '') return [...allowed];
  const granted = new Map<string, SmartScope>();
  for (const want of parseScopes(requested).scopes) {
    for (const have of allowed) {
      const resourceType = intersectType(want.resourceType, have.resourceType);
      if (resourceType === undefined) continue;
      const permissions = new Set(ORDER.filter((p) => want.permissions.has(p) && have.permissions.has(p)));
      if (permissions.size === 0) continue;
      const text = formatScope(resourceType, permissions, want.syntax);
      if (!granted.has(text)) granted.set(text, { text, resourceType, permissions, syntax: want.syntax });
    }
  }
  return [...granted.values()];
}

function intersectType(a: string, b: string): string | undefined {
  if (a === '*') return b;
  if (b === '*' || a === b) return a;
  return undefined;
}

/** The scope that allows `permission` on `resourceType`, or undefined when none does. */
export function findScope(
  scopes: readonly SmartScope[],
  resourceType: string,
  permission: Permission,
): SmartScope | undefined {
  return scopes.find(
    (s) => (s.resourceType === '*' || s.resourceType === resourceType) && s.permissions.has(permission),
  );
}

/** The scopes that would allow an interaction, for 403 messages: `system/Practitioner.read or system/Practitioner.s`. */
export function describeRequired(resourceType: string, permission: Permission): string {
  const v1 = permission === 'r' || permission === 's' ? 'read' : 'write';
  return `system/${resourceType}.${v1} or system/${resourceType}.${permission}`;
}
