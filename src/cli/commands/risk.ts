import { type Command, InvalidArgumentError } from 'commander';
import {
  assessPatientProfileRisk,
  DEFAULT_RISK_THRESHOLDS,
  type ProfileWrite,
  type ReleaseRisk,
} from '../../core/anonymize/release.ts';
import type { RiskThresholds } from '../../core/anonymize/risk.ts';
import { loadFlow } from '../../engine/config/load-flow.ts';
import { CONSENT_STREAM } from '../../engine/consent/consent-gate.ts';
import { processRecord, type RecordStageContext } from '../../engine/pipeline/record-stages.ts';
import { buildFlowRuntime, type FlowRuntime } from '../../engine/runtime/build-flow.ts';
import { EXIT, printJson, printLine, reportError } from '../output.ts';

/**
 * `sluice risk FLOW.yaml`: the re-identification risk of the pseudonymous patient profiles a flow would
 * send, computed by reading the source the way the flow does (validation, withhold rules, consent,
 * mapping) without sending or checkpointing anything. Exit 1 when a threshold fails.
 */

interface RiskCliOptions {
  readonly json?: boolean;
  readonly k?: number;
  readonly maxRisk?: number;
  readonly sensitive?: string[];
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('a whole number of at least 1');
  return n;
}

function probability(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || n > 1) throw new InvalidArgumentError('a number in (0, 1]');
  return n;
}

export function registerRisk(program: Command): void {
  program
    .command('risk')
    .description(
      're-identification risk (k-anonymity, prosecutor risk, l-diversity) of what a flow would send',
    )
    .argument('<flow>', 'flow file (YAML)')
    .option(
      '--k <n>',
      `smallest equivalence class allowed (default ${DEFAULT_RISK_THRESHOLDS.minK})`,
      positiveInt,
    )
    .option(
      '--max-risk <p>',
      `highest prosecutor risk allowed (default ${DEFAULT_RISK_THRESHOLDS.maxProsecutorRisk})`,
      probability,
    )
    .option('--sensitive <field...>', 'CRM fields to treat as sensitive attributes (distinct l-diversity)')
    .option('--json', 'print the figures as one JSON line')
    .action(async (file: string, options: RiskCliOptions) => {
      process.exitCode = await riskCommand(file, options);
    });
}

async function riskCommand(file: string, options: RiskCliOptions): Promise<number> {
  const json = options.json === true;
  const thresholds: RiskThresholds = {
    minK: options.k ?? DEFAULT_RISK_THRESHOLDS.minK,
    maxProsecutorRisk: options.maxRisk ?? DEFAULT_RISK_THRESHOLDS.maxProsecutorRisk,
  };
  let runtime: FlowRuntime | undefined;
  try {
    const flow = loadFlow(file);
    runtime = await buildFlowRuntime(flow);
    const object = flow.file.target.patientProfileObject;
    const { writes, read } = await outgoingProfiles(runtime, object, new AbortController().signal);
    const risk = assessPatientProfileRisk(writes, thresholds, {
      object,
      ...(options.sensitive ? { sensitive: options.sensitive } : {}),
    });
    const figures = riskFigures(flow.file.flow, object, read, risk);
    if (json) printJson(figures);
    else printRiskText(figures);
    return risk.hold ? EXIT.failed : EXIT.ok;
  } catch (err) {
    return reportError(err, json);
  } finally {
    await runtime?.close();
  }
}

/**
 * The patient-profile writes the flow would produce now: consents read first (as a run does), then every
 * Patient page through the record stages. Quarantined and withheld records send nothing and count nothing.
 */
async function outgoingProfiles(
  runtime: FlowRuntime,
  object: string,
  signal: AbortSignal,
): Promise<{ writes: ProfileWrite[]; read: number }> {
  const gate = runtime.consent;
  // Every patient there is: the EHR itself, also when the flow reads change events from a bus (which
  // keeps them for `maxAgeDays` only).
  const source = runtime.bus?.ehr ?? runtime.source;
  if (gate && source.streams.includes(CONSENT_STREAM)) {
    for await (const page of source.read(CONSENT_STREAM, undefined, signal)) {
      for (const record of page.records) gate.ingest(record.resource);
    }
  }
  const stages: RecordStageContext = {
    ...runtime.stages,
    asOf: new Date(),
    ...(gate ? { consent: (subject: string, type: string) => gate.check(subject, type) } : {}),
  };
  const writes: ProfileWrite[] = [];
  let read = 0;
  for await (const page of source.read('Patient', undefined, signal)) {
    for (const record of page.records) {
      read++;
      const verdict = processRecord(record, stages);
      if (verdict.kind !== 'ready') continue;
      for (const write of verdict.writes) if (write.object === object) writes.push(write);
    }
  }
  return { writes, read };
}

interface RiskFigures {
  readonly flow: string;
  readonly object: string;
  readonly patientsRead: number;
  readonly records: number;
  readonly quasiIdentifiers: readonly string[];
  readonly classes: number;
  readonly k: number;
  readonly uniques: number;
  readonly prosecutor: { readonly max: number; readonly average: number };
  readonly recordsAtRisk: number;
  readonly riskLimit: number;
  readonly l: Readonly<Record<string, number>>;
  readonly classSizes: readonly (readonly [number, number])[];
  readonly thresholds: RiskThresholds;
  readonly violations: ReleaseRisk['violations'];
  readonly pass: boolean;
}

function riskFigures(flow: string, object: string, read: number, risk: ReleaseRisk): RiskFigures {
  const r = risk.report;
  return {
    flow,
    object,
    patientsRead: read,
    records: r.records,
    quasiIdentifiers: r.quasiIdentifiers,
    classes: r.classes,
    k: r.k,
    uniques: r.uniques,
    prosecutor: { max: round(r.prosecutor.max), average: round(r.prosecutor.average) },
    recordsAtRisk: risk.recordsAtRisk,
    riskLimit: risk.riskLimit,
    l: risk.l,
    classSizes: r.classSizes,
    thresholds: risk.thresholds,
    violations: risk.violations,
    pass: !risk.hold,
  };
}

function printRiskText(f: RiskFigures): void {
  printLine(
    `flow ${f.flow}: ${f.records} ${f.object} records would be sent (${f.patientsRead} patients read)`,
  );
  printLine(`  quasi-identifiers: ${f.quasiIdentifiers.join(', ')}`);
  printLine(`  k-anonymity: ${f.k} (${f.classes} classes, ${f.uniques} unique records)`);
  printLine(`  prosecutor risk: max ${f.prosecutor.max}, average ${f.prosecutor.average}`);
  printLine(`  records at risk above ${f.riskLimit}: ${f.recordsAtRisk}`);
  for (const [attribute, l] of Object.entries(f.l)) printLine(`  distinct l-diversity of ${attribute}: ${l}`);
  if (f.pass) printLine('  within thresholds');
  for (const v of f.violations) {
    printLine(`  FAILED ${v.threshold}: limit ${v.limit}, actual ${round(v.actual)}`);
  }
}

function round(value: number): number {
  return Math.round(value * 10_000) / 10_000;
}
