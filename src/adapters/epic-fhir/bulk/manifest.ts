import { z } from 'zod';
import { SluiceError } from '../../../core/errors/index.ts';
import { isJsonObject, parseReference } from '../../../core/fhir/resource.ts';

/**
 * The formats of a Bulk Data export (FHIR Bulk Data Access IG v2): the completion manifest, the
 * `deleted` files (Bundles of DELETE requests) and the `error` files (OperationOutcomes). Pure parsing;
 * problems never quote content.
 */

export interface BulkFile {
  readonly type: string;
  /** Absolute URL (resolved against the status URL when the server sent a relative one). */
  readonly url: string;
  readonly count?: number;
}

export interface BulkManifest {
  /** The instant the export reflects; the next export's `_since`. Kept verbatim here. */
  readonly transactionTime: string;
  readonly request: string;
  readonly requiresAccessToken: boolean;
  readonly output: readonly BulkFile[];
  readonly deleted: readonly BulkFile[];
  readonly error: readonly BulkFile[];
}

const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

const FileSchema = z.looseObject({
  type: z.string().regex(/^[A-Z][A-Za-z]{0,63}$/),
  url: z.string().min(1),
  count: z.number().int().nonnegative().optional(),
});

const ManifestSchema = z.looseObject({
  transactionTime: z
    .string()
    .regex(INSTANT)
    .refine((value) => !Number.isNaN(Date.parse(value))),
  request: z.string(),
  requiresAccessToken: z.boolean(),
  output: z.array(FileSchema),
  // Required by the IG, but servers with nothing to report sometimes leave these out.
  deleted: z.array(FileSchema).optional(),
  error: z.array(FileSchema).optional(),
});

/**
 * Validates a completion manifest and resolves its file URLs against `base` (the status URL). Throws
 * SRC_BAD_RESPONSE naming the offending keys, never their values.
 */
export function parseManifest(body: unknown, base: string): BulkManifest {
  const parsed = ManifestSchema.safeParse(body);
  if (!parsed.success) {
    const keys = [...new Set(parsed.error.issues.map((i) => i.path.join('.') || '(root)'))];
    throw new SluiceError(
      'SRC_BAD_RESPONSE',
      `The EHR's bulk export manifest is invalid at: ${keys.slice(0, 10).join(', ')}.`,
      { details: { keys } },
    );
  }
  const m = parsed.data;
  const files = (list: readonly z.infer<typeof FileSchema>[] | undefined, key: string): BulkFile[] =>
    (list ?? []).map((f, index) => {
      let url: string;
      try {
        url = new URL(f.url, base).toString();
      } catch {
        throw new SluiceError(
          'SRC_BAD_RESPONSE',
          `The EHR's bulk export manifest has an invalid URL at ${key}.${index}.url.`,
        );
      }
      return { type: f.type, url, ...(f.count === undefined ? {} : { count: f.count }) };
    });
  return {
    transactionTime: m.transactionTime,
    request: m.request,
    requiresAccessToken: m.requiresAccessToken,
    output: files(m.output, 'output'),
    deleted: files(m.deleted, 'deleted'),
    error: files(m.error, 'error'),
  };
}

export interface DeletedEntry {
  readonly resourceType: string;
  readonly id: string;
  /** `entry.response.lastModified`, when the server gave one. */
  readonly at?: string;
}

/** The DELETE entries of one line of a `deleted` file; `skipped` counts entries that are not one. */
export function deletedEntries(bundle: unknown): { entries: DeletedEntry[]; skipped: number } {
  const entries: DeletedEntry[] = [];
  let skipped = 0;
  if (!isJsonObject(bundle) || bundle.resourceType !== 'Bundle') return { entries, skipped: 1 };
  for (const entry of Array.isArray(bundle.entry) ? bundle.entry : []) {
    const request = isJsonObject(entry) ? entry.request : undefined;
    const target =
      isJsonObject(request) && request.method === 'DELETE' ? parseReference(request.url) : undefined;
    if (!target) {
      skipped++;
      continue;
    }
    const response = isJsonObject(entry) ? entry.response : undefined;
    const at = isJsonObject(response) ? response.lastModified : undefined;
    entries.push({
      ...target,
      ...(typeof at === 'string' && !Number.isNaN(Date.parse(at)) ? { at } : {}),
    });
  }
  return { entries, skipped };
}

/** `severity:code` of each issue of an OperationOutcome (codes only: diagnostics may quote data). */
export function outcomeIssueCodes(outcome: unknown): string[] {
  if (!isJsonObject(outcome) || outcome.resourceType !== 'OperationOutcome') return ['unreadable'];
  const codes: string[] = [];
  for (const issue of Array.isArray(outcome.issue) ? outcome.issue : []) {
    if (!isJsonObject(issue)) continue;
    const code = typeof issue.code === 'string' && /^[a-z-]{1,40}$/.test(issue.code) ? issue.code : 'unknown';
    const severity =
      typeof issue.severity === 'string' && /^[a-z]{1,20}$/.test(issue.severity) ? issue.severity : 'unknown';
    codes.push(`${severity}:${code}`);
  }
  return codes.length > 0 ? codes : ['no-issue'];
}
