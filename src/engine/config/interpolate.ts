/**
 * `${VAR}` and `${VAR:-default}` references in the string values of a parsed flow file, resolved from
 * an environment map. Interpolation happens after YAML parsing, so a value can never inject structure.
 * `$${` escapes a literal `${`. Every missing variable is reported with the dotted key that used it.
 */
export interface MissingVariable {
  readonly key: string;
  readonly variable: string;
}

const REFERENCE = /\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

export function interpolate(
  value: unknown,
  env: Readonly<Record<string, string | undefined>>,
): { value: unknown; missing: MissingVariable[] } {
  const missing: MissingVariable[] = [];
  const walk = (node: unknown, key: string): unknown => {
    if (typeof node === 'string') {
      return node.replace(REFERENCE, (whole, escaped: string, name: string, fallback: string | undefined) => {
        if (escaped) return whole.slice(1);
        const found = env[name];
        if (found !== undefined && found !== '') return found;
        if (fallback !== undefined) return fallback;
        missing.push({ key, variable: name });
        return '';
      });
    }
    if (Array.isArray(node)) return node.map((item, index) => walk(item, `${key}[${index}]`));
    if (node !== null && typeof node === 'object') {
      return Object.fromEntries(
        Object.entries(node).map(([k, v]) => [k, walk(v, key === '' ? k : `${key}.${k}`)]),
      );
    }
    return node;
  };
  return { value: walk(value, ''), missing };
}
