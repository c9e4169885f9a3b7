/**
 * Kick-off parameters of a Bulk Data `$export` request (FHIR Bulk Data Access IG v2), parsed and
 * checked as a pure function. Problems are values (`ok: false`) with the message for the 400 answer.
 */

export const NDJSON_FORMATS = ['application/fhir+ndjson', 'application/ndjson', 'ndjson'] as const;

export type ExportLevel =
  | { readonly kind: 'system' }
  | { readonly kind: 'patient' }
  | { readonly kind: 'group'; readonly groupId: string };

export interface ExportParams {
  readonly since?: { readonly iso: string; readonly ms: number };
  /** The `_type` list, when given (known R4 types only). */
  readonly types?: readonly string[];
}

export type ParsedExport =
  | { readonly ok: true; readonly params: ExportParams }
  | { readonly ok: false; readonly message: string };

const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const KNOWN = new Set(['_outputFormat', '_since', '_type']);
/** Parameters of the IG this sandbox does not implement: refused unless `Prefer: handling=lenient`. */
const UNSUPPORTED = new Set(['_typeFilter', '_elements', 'patient', 'includeAssociatedData', '_until']);

export function parseExportRequest(
  query: Readonly<Record<string, string | readonly string[] | undefined>>,
  prefer: string | readonly string[] | undefined,
  isResourceType: (type: string) => boolean,
): ParsedExport {
  const preferences = new Set(
    [prefer ?? []]
      .flat()
      .flatMap((p) => p.split(','))
      .map((p) => p.trim().toLowerCase())
      .filter(Boolean),
  );
  if (!preferences.has('respond-async')) {
    return { ok: false, message: 'A $export request needs the header "Prefer: respond-async".' };
  }
  const lenient = preferences.has('handling=lenient');

  for (const name of Object.keys(query)) {
    if (KNOWN.has(name)) continue;
    if (lenient) continue;
    const why = UNSUPPORTED.has(name) ? 'is not supported by this server' : 'is not a $export parameter';
    return { ok: false, message: `Parameter ${name} ${why} (send "Prefer: handling=lenient" to ignore it).` };
  }

  const format = last(query._outputFormat);
  if (format !== undefined && !(NDJSON_FORMATS as readonly string[]).includes(format)) {
    return { ok: false, message: `_outputFormat must be one of ${NDJSON_FORMATS.join(', ')}.` };
  }

  let since: ExportParams['since'];
  const sinceText = last(query._since);
  if (sinceText !== undefined) {
    const ms = Date.parse(sinceText);
    if (!INSTANT.test(sinceText) || Number.isNaN(ms)) {
      return { ok: false, message: '_since must be a FHIR instant, e.g. 2026-01-31T12:00:00Z.' };
    }
    since = { iso: sinceText, ms };
  }

  let types: string[] | undefined;
  if (query._type !== undefined) {
    types = [];
    for (const type of [query._type].flat().flatMap((t) => t.split(','))) {
      const name = type.trim();
      if (name === '' || types.includes(name)) continue;
      if (!isResourceType(name)) {
        if (lenient) continue;
        const shown = /^[A-Za-z]{1,64}$/.test(name) ? ` ${name}` : '';
        return { ok: false, message: `_type names an unknown resource type${shown}.` };
      }
      types.push(name);
    }
  }

  return { ok: true, params: { ...(since ? { since } : {}), ...(types ? { types } : {}) } };
}

function last(value: string | readonly string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  return typeof value === 'string' ? value : value.at(-1);
}
