import { once } from 'node:events';
import { createWriteStream, mkdirSync, renameSync, rmSync, type WriteStream } from 'node:fs';
import { basename, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Command } from 'commander';
import {
  bundleFullUrlOf,
  type FileItem,
  readResourceFile,
  resourcesFromJsonText,
} from '../../adapters/files/resource-files.ts';
import type { AnonymizeContext, ResourceRef } from '../../core/anonymize/context.ts';
import { anonymizeContextFromEnv } from '../../core/anonymize/env-context.ts';
import { msAnonymizerForProfile } from '../../core/anonymize/ms-compat/index.ts';
import { type AuditEntry, anonymize, mergeAudit } from '../../core/anonymize/pipeline.ts';
import { loadProfile, type Profile } from '../../core/anonymize/profile.ts';
import { aggregateRelease, assessProfileRisk } from '../../core/anonymize/release.ts';
import { isSluiceError, SluiceError } from '../../core/errors/index.ts';
import { loadR4Definitions } from '../../core/fhir/definitions.ts';
import type { JsonObject } from '../../core/fhir/resource.ts';
import { EXIT, printJson, reportError } from '../output.ts';

/**
 * `sluice anonymize --profile NAME|FILE IN...`: what a recipient of a profile would get, outside any flow,
 * for reviewers. Each input (FHIR JSON, a Bundle, NDJSON, their .gz forms, `-` for stdin) becomes NDJSON
 * of the released resources; the audit summary says per element path, class and method how many
 * elements were changed or removed — never a value. Keys come from the environment only.
 */

interface AnonymizeOptions {
  readonly profile: string;
  readonly out?: string;
  readonly json?: boolean;
  readonly asOf?: string;
}

/** Progress on stderr every this many resources, so a large input shows it is moving. */
const PROGRESS_EVERY = 5000;

export function registerAnonymize(program: Command): void {
  program
    .command('anonymize')
    .description('apply an anonymization profile to FHIR JSON, Bundles or NDJSON (keys from the environment)')
    .requiredOption('--profile <name|file>', 'safe-harbor, crm-follow-up, analytics, or a profile file')
    .argument('<inputs...>', 'FHIR JSON, Bundle or NDJSON files (.gz too), or - for stdin')
    .option('--out <dir>', 'write one NDJSON file per input here (default: all to stdout)')
    .option('--as-of <date>', 'the date ages are computed on (default: now)')
    .option('--json', 'print the audit summary as the last stdout line (JSON) instead of on stderr')
    .action(async (inputs: string[], options: AnonymizeOptions) => {
      process.exitCode = await runAnonymize(inputs, options);
    });
}

interface InputSummary {
  readonly input: string;
  readonly resources: number;
  readonly released: number;
  readonly withheld: number;
  readonly output?: string;
}

async function runAnonymize(inputs: readonly string[], options: AnonymizeOptions): Promise<number> {
  const json = options.json === true;
  let profile: Profile;
  let ctx: AnonymizeContext;
  let ms: ReturnType<typeof msAnonymizerForProfile> | undefined;
  try {
    loadR4Definitions();
    profile = loadProfile(options.profile);
    const asOf = options.asOf === undefined ? new Date() : new Date(options.asOf);
    if (Number.isNaN(asOf.getTime())) {
      throw new SluiceError('ANON_CONTEXT_INVALID', '--as-of is not a date (use YYYY-MM-DD).');
    }
    ctx = anonymizeContextFromEnv(profile, process.env, asOf);
    // Microsoft-format configs (recognised by loadProfile) run through their own engine, keys from the
    // config's parameters or SLUICE_MS_*_KEY in the environment.
    ms = profile.msCompat ? msAnonymizerForProfile(profile, process.env, { now: asOf }) : undefined;
    if (options.out !== undefined) mkdirSync(options.out, { recursive: true });
  } catch (err) {
    const code = reportError(err, json);
    // A profile, key or option that is wrong is configuration: nothing ran.
    return isSluiceError(err) && err.code.startsWith('ANON_') ? EXIT.usage : code;
  }

  const summaries: InputSummary[] = [];
  const audits: AuditEntry[][] = [];
  const warnings = new Map<string, number>();
  const kept: JsonObject[] = [];
  const keepType = new Set([profile.risk?.resourceType, profile.aggregation?.resourceType]);
  const usedNames = new Set<string>();
  let seen = 0;
  for (const input of inputs) {
    const outFile = options.out === undefined ? undefined : join(options.out, outputName(input, usedNames));
    const partial = outFile === undefined ? undefined : `${outFile}.partial`;
    const sink: WriteStream | NodeJS.WriteStream =
      partial === undefined ? process.stdout : createWriteStream(partial, { mode: 0o600 });
    let resources = 0;
    let released = 0;
    try {
      for await (const batch of inputBatches(input)) {
        for (const resource of batch.resources) {
          resources++;
          seen++;
          const result = ms
            ? ms.anonymize(resource)
            : anonymize(resource, profile.ruleSet, { ...ctx, references: batch.references });
          audits.push([...result.audit]);
          for (const w of result.warnings) warnings.set(w.code, (warnings.get(w.code) ?? 0) + 1);
          if (result.resource) {
            released++;
            if (keepType.has(String(result.resource.resourceType))) kept.push(result.resource);
            if (!sink.write(`${JSON.stringify(result.resource)}\n`)) await once(sink, 'drain');
          }
          if (seen % PROGRESS_EVERY === 0) process.stderr.write(`anonymize: ${seen} resources…\n`);
        }
      }
      if (partial !== undefined && outFile !== undefined) {
        await closeStream(sink as WriteStream);
        renameSync(partial, outFile);
      }
    } catch (err) {
      if (partial !== undefined) {
        (sink as WriteStream).destroy();
        rmSync(partial, { force: true });
      }
      return reportError(err, json);
    }
    summaries.push({
      input,
      resources,
      released,
      withheld: resources - released,
      ...(outFile === undefined ? {} : { output: outFile }),
    });
  }

  const audit = summarizeAudit(mergeAudit(audits));
  const risk = profile.risk ? assessProfileRisk(profile.risk, kept) : undefined;
  const aggregates = profile.aggregation ? aggregateRelease(profile.aggregation, kept) : undefined;
  const summary = {
    profile: { name: profile.name, version: profile.ruleSet.version, source: profile.source },
    restrictedZip3: profile.restrictedZip3,
    asOf: ctx.asOf.toISOString(),
    inputs: summaries,
    totals: {
      resources: sum(summaries.map((s) => s.resources)),
      released: sum(summaries.map((s) => s.released)),
      withheld: sum(summaries.map((s) => s.withheld)),
    },
    audit,
    warnings: Object.fromEntries([...warnings].sort()),
    ...(risk
      ? {
          risk: {
            records: risk.report.records,
            quasiIdentifiers: risk.report.quasiIdentifiers,
            k: risk.report.k,
            prosecutor: risk.report.prosecutor,
            recordsAtRisk: risk.recordsAtRisk,
            l: risk.l,
            thresholds: risk.thresholds,
            violations: risk.violations,
            hold: risk.hold,
          },
        }
      : {}),
    ...(aggregates ? { aggregates } : {}),
  };
  if (json) printJson(summary);
  else printSummaryText(summary.totals, audit, risk?.hold);
  return EXIT.ok;
}

/** One audit row per path, class and method: how many elements, never what they held. */
export interface AuditRow {
  readonly path: string;
  readonly class: string;
  readonly method: string;
  readonly detail: string;
  readonly count: number;
}

function summarizeAudit(entries: readonly AuditEntry[]): AuditRow[] {
  const rows = new Map<string, AuditRow>();
  for (const e of entries) {
    const key = `${e.path}\u001f${e.class}\u001f${e.method}\u001f${e.paramsSummary}`;
    const found = rows.get(key);
    rows.set(
      key,
      found
        ? { ...found, count: found.count + e.count }
        : { path: e.path, class: e.class, method: e.method, detail: e.paramsSummary, count: e.count },
    );
  }
  return [...rows.values()].sort(
    (a, b) => a.path.localeCompare(b.path) || a.method.localeCompare(b.method) || b.count - a.count,
  );
}

function printSummaryText(
  totals: { resources: number; released: number; withheld: number },
  audit: readonly AuditRow[],
  hold: boolean | undefined,
): void {
  const err = process.stderr;
  err.write(
    `anonymize: ${totals.resources} resources read, ${totals.released} released, ${totals.withheld} withheld\n`,
  );
  for (const row of audit) {
    err.write(`  ${row.path}  ${row.class}  ${row.method} (${row.detail})  ${row.count}\n`);
  }
  if (hold !== undefined)
    err.write(`release risk: ${hold ? 'ABOVE the profile thresholds' : 'within thresholds'}\n`);
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** `a/b/x.json.gz` → `x.ndjson`; the same name twice gets `-2`, `-3`… */
function outputName(input: string, used: Set<string>): string {
  const stem = input === '-' ? 'stdin' : basename(input).replace(/(\.(json|ndjson|jsonl))?(\.gz)?$/, '');
  let name = `${stem}.ndjson`;
  for (let i = 2; used.has(name); i++) name = `${stem}-${i}.ndjson`;
  used.add(name);
  return name;
}

interface InputBatch {
  readonly resources: readonly JsonObject[];
  /** Bundle-local references (`urn:uuid:`) of the batch's Bundle. */
  readonly references: ReadonlyMap<string, ResourceRef>;
}

const NO_REFERENCES: ReadonlyMap<string, ResourceRef> = new Map();

/**
 * The resources of one input. A JSON document (resource or Bundle) is one batch, so its `urn:uuid:`
 * references resolve; NDJSON streams in batches of lines. Anything unreadable is ANON_INPUT_INVALID
 * naming the input and line, never content.
 */
async function* inputBatches(input: string): AsyncGenerator<InputBatch> {
  if (input === '-') {
    yield* batchesFromItems(stdinItems(await readStdin()), input);
    return;
  }
  yield* batchesFromItems(readResourceFile(input), input);
}

async function* batchesFromItems(
  items: AsyncIterable<FileItem> | Iterable<FileItem>,
  input: string,
): AsyncGenerator<InputBatch> {
  let pending: JsonObject[] = [];
  let lineBased = false;
  for await (const item of items) {
    if (item.kind === 'error') {
      const where = item.at.line === undefined ? '' : ` line ${item.at.line}`;
      const entry = item.at.entry === undefined ? '' : ` entry ${item.at.entry}`;
      throw new SluiceError('ANON_INPUT_INVALID', `${input}${where}${entry}: ${item.message}.`, {
        details: { input, ...(item.at.line === undefined ? {} : { line: item.at.line }) },
      });
    }
    lineBased = item.at.line !== undefined;
    pending.push(item.resource as JsonObject);
    if (lineBased && pending.length >= 1000) {
      yield { resources: pending, references: NO_REFERENCES };
      pending = [];
    }
  }
  if (pending.length === 0) return;
  if (lineBased) {
    yield { resources: pending, references: NO_REFERENCES };
    return;
  }
  const references = new Map<string, ResourceRef>();
  for (const resource of pending) {
    const fullUrl = bundleFullUrlOf(resource);
    if (fullUrl && typeof resource.resourceType === 'string' && typeof resource.id === 'string') {
      references.set(fullUrl, { resourceType: resource.resourceType, id: resource.id });
    }
  }
  yield { resources: pending, references };
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/** Stdin: gzip by its magic bytes; one JSON document, else NDJSON line by line. */
export function* stdinItems(raw: Buffer): Generator<FileItem> {
  let bytes = raw;
  if (raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      bytes = gunzipSync(raw);
    } catch {
      yield { kind: 'error', message: 'not a valid gzip stream', at: { file: '-' } };
      return;
    }
  }
  const text = bytes.toString('utf8');
  if (text.trim() === '') {
    yield { kind: 'error', message: 'empty input', at: { file: '-' } };
    return;
  }
  if (isWholeJson(text)) {
    yield* resourcesFromJsonText(text, { file: '-' });
    return;
  }
  // Not one JSON document: NDJSON, each line its own (the first bad line is reported by number).
  for (const [index, line] of text.split(/\r?\n/).entries()) {
    if (line.trim() !== '') yield* resourcesFromJsonText(line, { file: '-', line: index + 1 });
  }
}

function isWholeJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function closeStream(stream: WriteStream): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.end((err?: Error | null) => (err ? reject(err) : resolve()));
  });
}
