import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { z } from 'zod';
import { SluiceError } from '../errors/index.ts';
import type { TargetWrite } from '../mapping/canonical-to-veeva.ts';
import type { Issue } from '../mapping/outcome.ts';

/**
 * A recipient allowlist: for one recipient and purpose, exactly which target objects and fields may be
 * sent. Versioned and reviewable as a file; whatever a mapping produces beyond it is dropped and
 * recorded, never passed through. Combinations that must not travel together (a birth year with the
 * over-89 flag reveals an age Safe Harbor bands) fail the record.
 */
export const AllowlistSchema = z
  .object({
    version: z.string().regex(/^[a-z0-9][a-z0-9.@_-]{0,80}$/, 'a version label such as crm-hoperat@1'),
    recipient: z.string().min(1),
    purpose: z.string().regex(/^[A-Z]{2,12}$/, 'a PurposeOfUse code'),
    owner: z.string().min(1),
    objects: z.record(z.string().min(1), z.array(z.string().min(1)).min(1)),
    forbidTogether: z
      .array(
        z
          .object({
            object: z.string().min(1),
            fields: z.array(z.string().min(1)).min(2),
            why: z.string().min(1),
          })
          .strict(),
      )
      .default([]),
  })
  .strict();

export type Allowlist = z.output<typeof AllowlistSchema>;

export interface AllowlistVerdict {
  readonly writes: TargetWrite[];
  /** `Object.Field` of every value the allowlist dropped. */
  readonly dropped: string[];
  /** Errors: an object not allowed at all, a forbidden combination. */
  readonly issues: Issue[];
}

/** Loads and validates an allowlist file (YAML or JSON); every problem is listed with its key. */
export function loadAllowlist(path: string): Allowlist {
  let raw: unknown;
  try {
    raw = parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new SluiceError('CFG_FILE_MISSING', `Cannot read the allowlist ${path}.`, { cause: err });
  }
  const parsed = AllowlistSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(file)'}: ${i.message}`);
    throw new SluiceError(
      'POLICY_ALLOWLIST_INVALID',
      `Allowlist ${path} is invalid:\n  ${issues.join('\n  ')}`,
      {
        details: { file: path, issues },
      },
    );
  }
  return parsed.data;
}

const present = (v: unknown): boolean => v !== null && v !== undefined && v !== false && v !== '';

/** Applies the allowlist to one record's writes. */
export function applyAllowlist(list: Allowlist, writes: readonly TargetWrite[]): AllowlistVerdict {
  const dropped: string[] = [];
  const issues: Issue[] = [];
  const out: TargetWrite[] = [];
  for (const w of writes) {
    const allowed = list.objects[w.object];
    if (!allowed) {
      issues.push({
        severity: 'error',
        code: 'POLICY_OBJECT_NOT_ALLOWED',
        path: w.object,
        message: `${w.object} is not allowed for ${list.recipient} under ${list.version}`,
      });
      continue;
    }
    const keep = new Set(allowed);
    const fields: Record<string, TargetWrite['fields'][string]> = {};
    for (const [field, value] of Object.entries(w.fields)) {
      if (keep.has(field)) fields[field] = value;
      else dropped.push(`${w.object}.${field}`);
    }
    for (const rule of list.forbidTogether) {
      if (rule.object === w.object && rule.fields.every((f) => present(fields[f]))) {
        issues.push({
          severity: 'error',
          code: 'POLICY_FORBIDDEN_COMBINATION',
          path: `${w.object}.${rule.fields.join('+')}`,
          message: `these fields may not be sent together: ${rule.why}`,
        });
      }
    }
    out.push({ ...w, fields });
  }
  return { writes: out, dropped, issues };
}
