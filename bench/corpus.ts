import { rewriteReferences } from '../src/core/fhir/resource.ts';
/**
 * Benchmark data: NDJSON scaled up from the public Synthea bundles and the provider directory by cloning
 * with fresh ids. Each source resource becomes a template once (its JSON split around the uuids to renew
 * and the NPI to replace), so a clone is a string join: generating a million lines costs seconds and the
 * memory of the templates only — lines go straight to the per-type files.
 *
 * Two kinds:
 * - `flow`: what the example flow reads — out of every ten resources one Organization and one
 *   Practitioner (directory clones with fresh ids and fresh valid NPIs) and eight Patients (Synthea
 *   clones with fresh ids; about one in ten is deceased, as in the source); optionally each Patient
 *   followed by a permit Consent for the flow's recipient and purpose.
 * - `clinical`: whole Synthea patients with all their resources (Observation-heavy), references
 *   rewritten from `urn:uuid:` to `Type/id` of the clone; their shared providers once, unchanged.
 *
 * Deterministic: the same kind and size give the same bytes, and a smaller corpus is the prefix (per
 * file) of a larger one.
 */

import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { isValidNpi } from '../src/core/fhir/npi.ts';
import { SAMPLE_DATA_DIR, sharedDataDir } from '../src/testkit/data.ts';

export type CorpusKind = 'flow' | 'clinical';

export interface CorpusOptions {
  /** Output folder (created); one `<Type>.ndjson` per resource type. */
  readonly dir: string;
  /** Exactly this many resources are written. */
  readonly resources: number;
  readonly kind: CorpusKind;
  /**
   * `flow` kind: follow every Patient with a Consent that permits this purpose for this recipient (as
   * the flow's consent stage names them), so patient data may move; they count towards `resources`.
   */
  readonly consents?: ConsentSpec;
  /** Called about every 50,000 resources with the count so far. */
  readonly onProgress?: (written: number) => void;
}

export interface ConsentSpec {
  /** `Type/id` of the recipient, e.g. `Organization/sluice-demo-crm`. */
  readonly recipient: string;
  /** The recipient's role code (v3 ParticipationType), e.g. `IRCP`. */
  readonly role: string;
  /** PurposeOfUse code, e.g. `HOPERAT`. */
  readonly purpose: string;
}

export interface CorpusReport {
  readonly dir: string;
  readonly kind: CorpusKind;
  readonly resources: number;
  readonly bytes: number;
  readonly byType: Readonly<Record<string, number>>;
  readonly files: readonly string[];
}

/** A resource's JSON cut around its variable parts: `segments[i]`, slot i, `segments[i + 1]`, … */
interface Template {
  readonly type: string;
  readonly segments: readonly string[];
  /** Index into `uuids`, or -1 for the NPI. */
  readonly slots: readonly number[];
  /** The source uuids this resource mentions that a clone renews. */
  readonly uuids: readonly string[];
}

interface PatientTemplate {
  /** The source Patient's id (its clones' ids are `cloneUuid(patientId, k)`). */
  readonly patientId: string;
  readonly patient: Template;
  /** Every resource of the bundle except the shared providers, Patient first. */
  readonly resources: readonly Template[];
}

interface Sources {
  readonly patients: readonly PatientTemplate[];
  readonly organizations: readonly Template[];
  readonly practitioners: readonly Template[];
  /** The bundles' own Organization/Practitioner copies (clinical kind), de-duplicated by id. */
  readonly providers: readonly { readonly type: string; readonly json: string }[];
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;
const NPI_VALUE = /("system":"http:\/\/hl7\.org\/fhir\/sid\/us-npi","value":")(\d{10})(")/g;
const PROVIDER_TYPES = new Set(['Organization', 'Practitioner']);

/** Where the Synthea bundles are: the shared data (60 patients) or, failing that, the repo's samples. */
export function syntheaDir(): string {
  const shared = sharedDataDir();
  return shared ? join(shared, 'synthea', 'bundles') : join(SAMPLE_DATA_DIR, 'synthea');
}

export const DIRECTORY_DIR = join(SAMPLE_DATA_DIR, 'directory');

/**
 * The id of clone `k` of a source uuid: the first eight hex digits become `k`. Clones of one uuid differ
 * in the prefix, clones of different uuids in the (random) rest, so ids never collide.
 */
export function cloneUuid(uuid: string, k: number): string {
  return `${(k >>> 0).toString(16).padStart(8, '0')}${uuid.slice(8)}`;
}

/** A valid ten-digit NPI (Luhn over the 80840 prefix), distinct for each n below 900,000,000. */
export function syntheticNpi(n: number): string {
  const base = String(100_000_000 + (n % 900_000_000));
  for (let check = 0; check < 10; check++) {
    const candidate = `${base}${check}`;
    if (isValidNpi(candidate)) return candidate;
  }
  throw new Error('unreachable: one check digit always fits');
}

/** Cuts `json` around every occurrence of a uuid in `uuids` and, if asked, every NPI value. */
function templateOf(type: string, json: string, renew: (uuid: string) => boolean, cutNpi: boolean): Template {
  const uuids = new Map<string, number>();
  const cuts: { start: number; end: number; slot: number }[] = [];
  for (const m of json.matchAll(UUID)) {
    if (!renew(m[0])) continue;
    let slot = uuids.get(m[0]);
    if (slot === undefined) {
      slot = uuids.size;
      uuids.set(m[0], slot);
    }
    cuts.push({ start: m.index, end: m.index + m[0].length, slot });
  }
  for (const m of cutNpi ? json.matchAll(NPI_VALUE) : []) {
    const start = m.index + (m[1] as string).length;
    cuts.push({ start, end: start + 10, slot: -1 });
  }
  cuts.sort((a, b) => a.start - b.start);
  const segments: string[] = [];
  const slots: number[] = [];
  let at = 0;
  for (const cut of cuts) {
    segments.push(json.slice(at, cut.start));
    slots.push(cut.slot);
    at = cut.end;
  }
  segments.push(json.slice(at));
  return { type, segments, slots, uuids: [...uuids.keys()] };
}

/**
 * Clone `k` of a template: every renewed uuid becomes `cloneUuid(uuid, k)` — a pure function, so the
 * clones of one bundle's resources keep referring to each other — and every NPI slot takes `npi`.
 */
function render(template: Template, k: number, npi = ''): string {
  const ids = template.uuids.map((u) => cloneUuid(u, k));
  let out = template.segments[0] as string;
  for (let i = 0; i < template.slots.length; i++) {
    const slot = template.slots[i] as number;
    out += slot < 0 ? npi : ids[slot];
    out += template.segments[i + 1];
  }
  return out;
}

interface Entry {
  readonly fullUrl?: string;
  readonly resource?: { readonly resourceType?: string; readonly id?: string };
}

function readGzJson(file: string): unknown {
  const raw = readFileSync(file);
  return JSON.parse((file.endsWith('.gz') ? gunzipSync(raw) : raw).toString('utf8'));
}

function patientTemplate(
  file: string,
  providers: Map<string, { type: string; json: string }>,
): PatientTemplate {
  const bundle = readGzJson(file) as { entry?: Entry[] };
  const entries = (bundle.entry ?? []).filter(
    (e): e is Required<Entry> & { resource: { resourceType: string; id: string } } =>
      typeof e.resource?.resourceType === 'string' && typeof e.resource.id === 'string',
  );
  const targets = new Map<string, string>();
  for (const e of entries) {
    if (typeof e.fullUrl === 'string') targets.set(e.fullUrl, `${e.resource.resourceType}/${e.resource.id}`);
  }
  const providerIds = new Set(
    entries.filter((e) => PROVIDER_TYPES.has(e.resource.resourceType)).map((e) => e.resource.id),
  );
  const jsons = entries.map((e) => {
    rewriteReferences(e.resource, targets);
    return { type: e.resource.resourceType, id: e.resource.id, json: JSON.stringify(e.resource) };
  });
  // Every uuid in the bundle is renewed (ids, references, the Synthea identifier) except the providers'.
  const renew = (uuid: string): boolean => !providerIds.has(uuid);
  const resources: Template[] = [];
  let patient: Template | undefined;
  let patientId = '';
  for (const { type, id, json } of jsons) {
    if (PROVIDER_TYPES.has(type)) {
      if (!providers.has(id)) providers.set(id, { type, json });
      continue;
    }
    const template = templateOf(type, json, renew, false);
    if (type === 'Patient') {
      patient = template;
      patientId = id;
    } else resources.push(template);
  }
  if (!patient) throw new Error(`no Patient in ${file}`);
  return { patientId, patient, resources: [patient, ...resources] };
}

function directoryTemplates(type: 'Organization' | 'Practitioner'): Sources['organizations'] {
  const text = gunzipSync(readFileSync(join(DIRECTORY_DIR, `${type}.ndjson.gz`))).toString('utf8');
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => templateOf(type, line, () => true, true));
}

let cached: Sources | undefined;

/** Reads and cuts the source data once per process. */
export function loadSources(): Sources {
  if (cached) return cached;
  const dir = syntheaDir();
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.json.gz') || f.endsWith('.json'))
    .sort();
  const providers = new Map<string, { type: string; json: string }>();
  const patients = files.map((f) => patientTemplate(join(dir, f), providers));
  cached = {
    patients,
    organizations: directoryTemplates('Organization'),
    practitioners: directoryTemplates('Practitioner'),
    providers: [...providers.values()],
  };
  return cached;
}

/** Buffered appends to one file per resource type. */
class TypeFiles {
  readonly #dir: string;
  readonly #open = new Map<string, { fd: number; buffer: string[]; size: number }>();
  readonly counts: Record<string, number> = {};
  bytes = 0;

  constructor(dir: string) {
    this.#dir = dir;
  }

  write(type: string, line: string): void {
    let file = this.#open.get(type);
    if (!file) {
      file = { fd: openSync(join(this.#dir, `${type}.ndjson`), 'w'), buffer: [], size: 0 };
      this.#open.set(type, file);
    }
    file.buffer.push(line, '\n');
    file.size += line.length + 1;
    this.counts[type] = (this.counts[type] ?? 0) + 1;
    if (file.size >= 1 << 20) this.#flush(file);
  }

  #flush(file: { fd: number; buffer: string[]; size: number }): void {
    if (file.buffer.length === 0) return;
    const chunk = Buffer.from(file.buffer.join(''), 'utf8');
    writeSync(file.fd, chunk);
    this.bytes += chunk.length;
    file.buffer = [];
    file.size = 0;
  }

  close(): string[] {
    for (const file of this.#open.values()) {
      this.#flush(file);
      closeSync(file.fd);
    }
    return [...this.#open.keys()].sort().map((type) => join(this.#dir, `${type}.ndjson`));
  }
}

/** Writes the corpus; returns what was written. */
export function generateCorpus(options: CorpusOptions): CorpusReport {
  if (!Number.isInteger(options.resources) || options.resources < 1) {
    throw new Error('the corpus size must be a positive integer');
  }
  mkdirSync(options.dir, { recursive: true });
  const sources = loadSources();
  const out = new TypeFiles(options.dir);
  const progress = (n: number): void => {
    if (n % 50_000 === 0) options.onProgress?.(n);
  };
  if (options.kind === 'flow') writeFlow(sources, options.resources, out, progress, options.consents);
  else writeClinical(sources, options.resources, out, progress);
  const files = out.close();
  return {
    dir: options.dir,
    kind: options.kind,
    resources: options.resources,
    bytes: out.bytes,
    byType: { ...out.counts },
    files,
  };
}

/**
 * A permit Consent for one patient, in the shape of examples/data/consents (an OPTIN privacy consent
 * whose provision names the recipient, its role and the purpose).
 */
export function permitConsent(id: string, patientId: string, spec: ConsentSpec): string {
  return JSON.stringify({
    resourceType: 'Consent',
    id,
    status: 'active',
    scope: {
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }],
    },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0', display: 'Patient Consent' }] }],
    patient: { reference: `Patient/${patientId}` },
    dateTime: '2020-01-15T09:00:00Z',
    policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
    provision: {
      type: 'permit',
      period: { start: '2020-01-15' },
      actor: [
        {
          role: {
            coding: [
              { system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: spec.role },
            ],
          },
          reference: { reference: spec.recipient },
        },
      ],
      purpose: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: spec.purpose }],
    },
  });
}

function writeFlow(
  sources: Sources,
  total: number,
  out: TypeFiles,
  progress: (n: number) => void,
  consents: ConsentSpec | undefined,
): void {
  let patients = 0;
  let organizations = 0;
  let practitioners = 0;
  for (let i = 0, slots = 0; i < total; i++) {
    const slot = slots++ % 10;
    if (slot === 0 || slot === 5) {
      const list = slot === 0 ? sources.organizations : sources.practitioners;
      const n = slot === 0 ? organizations++ : practitioners++;
      const template = list[n % list.length] as Template;
      // Organizations and Practitioners draw from one NPI sequence, so no two providers share one.
      out.write(template.type, render(template, Math.floor(n / list.length), syntheticNpi(i)));
    } else {
      const n = patients++;
      const source = sources.patients[n % sources.patients.length] as PatientTemplate;
      const k = Math.floor(n / sources.patients.length);
      out.write('Patient', render(source.patient, k));
      if (consents && i + 1 < total) {
        progress(++i);
        const patientId = cloneUuid(source.patientId, k);
        out.write('Consent', permitConsent(`consent-${patientId}`, patientId, consents));
      }
    }
    progress(i + 1);
  }
}

function writeClinical(sources: Sources, total: number, out: TypeFiles, progress: (n: number) => void): void {
  let written = 0;
  for (const provider of sources.providers) {
    if (written === total) return;
    out.write(provider.type, provider.json);
    progress(++written);
  }
  for (let n = 0; written < total; n++) {
    const source = sources.patients[n % sources.patients.length] as PatientTemplate;
    const k = Math.floor(n / sources.patients.length);
    for (const template of source.resources) {
      if (written === total) return;
      out.write(template.type, render(template, k));
      progress(++written);
    }
  }
}
