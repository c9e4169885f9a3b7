import { evalFhirPath, type FhirPathAtom, getSearchParameter, parseFhirPath } from '@medplum/core';
import type { Resource } from '@medplum/fhirtypes';

const PATIENT_REFERENCE = /(?:^|\/)Patient\/([A-Za-z0-9\-.]{1,256})(?:\/_history\/[^/]+)?$/;

/**
 * Patient compartment membership from the R4 Patient CompartmentDefinition: a resource is in a
 * patient's compartment when one of its compartment search parameters references that patient (a
 * Patient is in its own). The parameters' FHIRPath expressions (already narrowed to the type, see
 * `narrowSearchExpressions`) are parsed once per type.
 */
export class PatientCompartment {
  readonly #params: ReadonlyMap<string, readonly string[]>;
  readonly #atoms = new Map<string, readonly FhirPathAtom[]>();

  constructor(params: ReadonlyMap<string, readonly string[]>) {
    this.#params = params;
  }

  /** Types whose resources can be in a Patient compartment (Patient included). */
  types(): string[] {
    return [...new Set(['Patient', ...this.#params.keys()])].sort();
  }

  has(resourceType: string): boolean {
    return resourceType === 'Patient' || this.#params.has(resourceType);
  }

  /** The ids of the patients whose compartment holds this resource. */
  patientsOf(resource: Resource): string[] {
    const out = new Set<string>();
    if (resource.resourceType === 'Patient' && resource.id) out.add(resource.id);
    for (const atom of this.#atomsFor(resource.resourceType)) {
      for (const value of evalFhirPath(atom, resource)) {
        const reference = (value as { reference?: unknown } | null)?.reference;
        if (typeof reference !== 'string') continue;
        const id = PATIENT_REFERENCE.exec(reference)?.[1];
        if (id) out.add(id);
      }
    }
    return [...out];
  }

  /** True when the resource is in the compartment of one of the given patients. */
  isInAny(resource: Resource, patientIds: ReadonlySet<string>): boolean {
    return this.patientsOf(resource).some((id) => patientIds.has(id));
  }

  #atomsFor(resourceType: string): readonly FhirPathAtom[] {
    const cached = this.#atoms.get(resourceType);
    if (cached) return cached;
    const atoms: FhirPathAtom[] = [];
    for (const code of this.#params.get(resourceType) ?? []) {
      const expression = getSearchParameter(resourceType, code)?.expression;
      if (!expression) continue;
      atoms.push(parseFhirPath(expression));
    }
    this.#atoms.set(resourceType, atoms);
    return atoms;
  }
}
