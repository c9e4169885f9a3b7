import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import type { z } from 'zod';
import { SluiceError } from '../errors/sluice-error.ts';
import { type CompiledPath, compileFhirPath } from '../policy/fhirpath.ts';
import {
  type ConceptMap,
  conceptMapsFileSchema,
  type MatrixField,
  type MatrixFile,
  type MatrixMapping,
  matrixFileSchema,
} from './schema.ts';
import { isTransformName } from './transforms.ts';

/** The matrix files shipped with Sluice. */
export const DEFAULT_MATRIX_DIR = fileURLToPath(new URL('../../../config/mappings/', import.meta.url));
export const CONCEPT_MAPS_FILE = 'concept-maps.yaml';

export interface CompiledField {
  readonly spec: MatrixField;
  readonly rule?: CompiledPath;
  /** Path used in issues: the field's `source`, else its rule, else its target. */
  readonly path: string;
}

export interface CompiledChild {
  readonly spec: MatrixMapping['children'][number];
  readonly forEach: CompiledPath;
  readonly fields: readonly CompiledField[];
}

export interface CompiledMapping {
  readonly spec: MatrixMapping;
  /** `id@version` of the file the mapping belongs to: recorded on every output. */
  readonly version: string;
  readonly when?: CompiledPath;
  readonly identity?: CompiledPath;
  readonly fields: readonly CompiledField[];
  readonly children: readonly CompiledChild[];
}

export interface CompiledMatrixFile {
  readonly name: string;
  readonly file: MatrixFile;
  readonly mappings: readonly CompiledMapping[];
}

export interface Matrix {
  readonly files: readonly CompiledMatrixFile[];
  readonly conceptMaps: Readonly<Record<string, ConceptMap>>;
  readonly conceptMapsVersion: string;
}

/** One problem in a matrix file, named by file and key (e.g. `mappings[2].fields[0].owner`). */
export interface MatrixProblem {
  readonly file: string;
  readonly key: string;
  readonly message: string;
}

export interface MatrixSource {
  readonly name: string;
  readonly text: string;
}

/** Reads every `*.yaml` of a directory (concept maps included) and compiles the matrix. */
export function loadMatrix(dir: string = DEFAULT_MATRIX_DIR): Matrix {
  const names = readdirSync(dir)
    .filter((n) => n.endsWith('.yaml'))
    .sort();
  return compileMatrix(names.map((name) => ({ name, text: readFileSync(join(dir, name), 'utf8') })));
}

let cached: Matrix | undefined;
/** The shipped matrix, loaded and compiled once per process. */
export function defaultMatrix(): Matrix {
  cached ??= loadMatrix();
  return cached;
}

/** Validates and compiles matrix sources; throws MATRIX_INVALID listing every problem with its key. */
export function compileMatrix(sources: readonly MatrixSource[]): Matrix {
  const { matrix, problems } = checkMatrix(sources);
  if (problems.length > 0 || matrix === undefined) {
    const lines = problems.map((p) => `${p.file}: ${p.key}: ${p.message}`);
    throw new SluiceError(
      'MATRIX_INVALID',
      `The mapping matrix has ${problems.length} error(s): ${lines.join('; ')}`,
      {
        details: { errors: lines },
      },
    );
  }
  return matrix;
}

function zodProblems(file: string, error: z.ZodError): MatrixProblem[] {
  return error.issues.map((i) => ({
    file,
    key: i.path.map(formatKey).join('').replace(/^\./, '') || '(root)',
    message: i.message,
  }));
}

function formatKey(part: PropertyKey): string {
  return typeof part === 'number' ? `[${part}]` : `.${String(part)}`;
}

/** Every problem of the matrix, without throwing (for `sluice mapping docs` and tests). */
export function checkMatrix(sources: readonly MatrixSource[]): {
  matrix?: Matrix;
  problems: MatrixProblem[];
} {
  const problems: MatrixProblem[] = [];
  let conceptMaps: Record<string, ConceptMap> = {};
  let conceptMapsVersion = '0.0.0';
  const files: CompiledMatrixFile[] = [];
  const mapSource = sources.find((s) => s.name === CONCEPT_MAPS_FILE);
  if (mapSource === undefined) {
    problems.push({ file: CONCEPT_MAPS_FILE, key: '(file)', message: 'concept map file is missing' });
  } else {
    const parsed = conceptMapsFileSchema.safeParse(safeYaml(mapSource, problems));
    if (parsed.success) {
      conceptMaps = parsed.data.maps;
      conceptMapsVersion = parsed.data.version;
    } else problems.push(...zodProblems(mapSource.name, parsed.error));
  }
  const ids = new Set<string>();
  for (const source of sources) {
    if (source === mapSource) continue;
    const parsed = matrixFileSchema.safeParse(safeYaml(source, problems));
    if (!parsed.success) {
      problems.push(...zodProblems(source.name, parsed.error));
      continue;
    }
    const file = parsed.data;
    if (ids.has(file.direction)) {
      problems.push({ file: source.name, key: 'direction', message: `a second file for ${file.direction}` });
    }
    ids.add(file.direction);
    const version = `${file.id}@${file.version}`;
    const mappings = file.mappings.map((m, i) =>
      compileMapping(m, `mappings[${i}]`, version, file, source.name, conceptMaps, problems),
    );
    files.push({ name: source.name, file, mappings });
  }
  return problems.length > 0
    ? { problems }
    : { matrix: { files, conceptMaps, conceptMapsVersion }, problems };
}

function safeYaml(source: MatrixSource, problems: MatrixProblem[]): unknown {
  try {
    return parse(source.text);
  } catch (err) {
    problems.push({
      file: source.name,
      key: '(yaml)',
      message: err instanceof Error ? err.message : 'not YAML',
    });
    return undefined;
  }
}

function compilePath(
  expr: string,
  file: string,
  key: string,
  problems: MatrixProblem[],
): CompiledPath | undefined {
  try {
    return compileFhirPath(expr);
  } catch (err) {
    problems.push({
      file,
      key,
      message: `FHIRPath does not compile: ${err instanceof Error ? err.message : String(err)}`,
    });
    return undefined;
  }
}

function compileMapping(
  spec: MatrixMapping,
  key: string,
  version: string,
  file: MatrixFile,
  fileName: string,
  conceptMaps: Record<string, ConceptMap>,
  problems: MatrixProblem[],
): CompiledMapping {
  const when =
    spec.when === undefined ? undefined : compilePath(spec.when, fileName, `${key}.when`, problems);
  const identity =
    spec.identity === undefined
      ? undefined
      : compilePath(spec.identity.rule, fileName, `${key}.identity.rule`, problems);
  if (spec.builder !== undefined && !isTransformName(spec.builder)) {
    problems.push({ file: fileName, key: `${key}.builder`, message: `unknown builder ${spec.builder}` });
  }
  if (file.direction === 'canonical->veeva') {
    if (spec.object === undefined && spec.objectConfig === undefined)
      problems.push({
        file: fileName,
        key: `${key}.object`,
        message: 'a Veeva write needs object or objectConfig',
      });
    if (spec.externalIdField === undefined)
      problems.push({
        file: fileName,
        key: `${key}.externalIdField`,
        message: 'a Veeva write needs an external id field',
      });
    if (spec.externalId === undefined)
      problems.push({
        file: fileName,
        key: `${key}.externalId`,
        message: 'a Veeva write needs an external id rule',
      });
  }
  if (
    (file.direction === 'fhir-r4->canonical' || file.direction === 'veeva->canonical') &&
    spec.identity === undefined
  ) {
    problems.push({
      file: fileName,
      key: `${key}.identity`,
      message: 'a mapping to canonical needs an identity rule',
    });
  }
  const fields = compileFields(spec.fields, `${key}.fields`, fileName, conceptMaps, problems);
  const children = spec.children.flatMap((child, i) => {
    const forEach = compilePath(child.forEach, fileName, `${key}.children[${i}].forEach`, problems);
    const childFields = compileFields(
      child.fields,
      `${key}.children[${i}].fields`,
      fileName,
      conceptMaps,
      problems,
    );
    return forEach === undefined ? [] : [{ spec: child, forEach, fields: childFields }];
  });
  return {
    spec,
    version,
    ...(when ? { when } : {}),
    ...(identity ? { identity } : {}),
    fields,
    children,
  };
}

function compileFields(
  fields: readonly MatrixField[],
  key: string,
  fileName: string,
  conceptMaps: Record<string, ConceptMap>,
  problems: MatrixProblem[],
): CompiledField[] {
  const targets = new Set<string>();
  return fields.map((spec, j) => {
    const k = `${key}[${j}]`;
    const add = (sub: string, message: string) =>
      problems.push({ file: fileName, key: `${k}${sub}`, message });
    const sources = [spec.rule !== undefined, spec.constant !== undefined, spec.config !== undefined].filter(
      Boolean,
    );
    if (sources.length !== 1) add('', `field ${spec.target} needs exactly one of rule, constant, config`);
    if (targets.has(spec.target)) add('.target', `target ${spec.target} is mapped twice`);
    targets.add(spec.target);
    if (spec.drives.length > 0) {
      // Governance: a field that drives consent, eligibility or PHI exposure is reviewed by a named owner
      // and checked by an explicit rule, or the matrix does not load.
      if (spec.owner === undefined)
        add('.owner', `field ${spec.target} drives ${spec.drives.join(', ')} and names no owner`);
      if (spec.validate === undefined && spec.allowedValues === undefined && spec.conceptMap === undefined)
        add(
          '.validate',
          `field ${spec.target} drives ${spec.drives.join(', ')} and names no validation rule`,
        );
      if (spec.compliance === undefined)
        add(
          '.compliance',
          `field ${spec.target} drives ${spec.drives.join(', ')} and has no compliance note`,
        );
    }
    if (spec.conceptMap !== undefined && !Object.hasOwn(conceptMaps, spec.conceptMap))
      add('.conceptMap', `unknown concept map ${spec.conceptMap}`);
    if (spec.transform !== undefined && !isTransformName(spec.transform))
      add('.transform', `unknown transform ${spec.transform}`);
    const rule =
      spec.rule === undefined ? undefined : compilePath(spec.rule, fileName, `${k}.rule`, problems);
    return { spec, ...(rule ? { rule } : {}), path: spec.source ?? spec.rule ?? spec.target };
  });
}
