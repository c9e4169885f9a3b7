import { OperationOutcomeError, validateResource } from '@medplum/core';
import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import { isJsonObject, type JsonObject } from '../fhir/resource.ts';
import { fail, type Issue, type Outcome, ok } from '../mapping/outcome.ts';

/**
 * Schema validation of a FHIR R4 resource against the base StructureDefinitions (types, cardinality,
 * required elements, primitive formats). Requires `loadR4Definitions()` to have run.
 * Every issue is returned; messages have quoted values removed so no record content leaks into
 * quarantine listings or logs.
 */
export function validateFhirResource(resource: unknown): Outcome<JsonObject> {
  if (!isJsonObject(resource) || typeof resource.resourceType !== 'string') {
    return fail('REC_UNPARSEABLE', [
      { severity: 'error', code: 'REC_UNPARSEABLE', path: '', message: 'not a FHIR resource object' },
    ]);
  }
  let warnings: OperationOutcomeIssue[];
  try {
    // Without errors the validator returns its warnings (e.g. two values for one choice element).
    warnings = validateResource(resource as unknown as Resource);
  } catch (err) {
    if (err instanceof OperationOutcomeError) {
      const issues = (err.outcome.issue ?? []).map(toIssue);
      if (issues.some((i) => i.severity === 'error')) return fail('REC_INVALID_FHIR', issues);
      return ok(resource, issues);
    }
    throw err;
  }
  return ok(resource, warnings.map(toIssue));
}

function toIssue(issue: OperationOutcomeIssue): Issue {
  const severity =
    issue.severity === 'warning' || issue.severity === 'information' ? issue.severity : 'error';
  return {
    severity,
    code: 'REC_INVALID_FHIR',
    path: issue.expression?.[0] ?? '',
    message: redactQuoted(issue.details?.text ?? issue.diagnostics ?? issue.code),
  };
}

/** Replaces every double-quoted span with an ellipsis: validator messages quote offending values. */
export function redactQuoted(message: string): string {
  return message.replace(/"[^"]*"/g, '"…"');
}
