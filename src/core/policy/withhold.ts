import { type CompiledPath, compileFhirPath, isTrue } from './fhirpath.ts';

/**
 * Withhold rules: a flow may decide not to send records it could send (deceased patients need no
 * follow-up, inactive providers no visits). A withheld record is counted and checkpointed, never
 * quarantined: nothing is wrong with it. A rule may also retract what earlier runs delivered for the
 * record (`delivered: delete`).
 */
export interface WithholdRuleSpec {
  readonly resourceType: string;
  /** A FHIRPath expression over the source resource; the record is withheld when it yields `true`. */
  readonly when: string;
  /** A short, non-PHI reason code recorded with the decision, e.g. `deceased`. */
  readonly reason: string;
  /**
   * What becomes of what earlier runs delivered for a record this rule now withholds: `keep` leaves it
   * at the target as it was last sent; `delete` removes it (a patient who died, a record merged into
   * another). Absent: `keep`.
   */
  readonly delivered?: 'keep' | 'delete';
}

export interface WithholdDecision {
  readonly withheld: true;
  readonly rule: WithholdRuleSpec;
}

export interface WithholdPolicy {
  /** The first rule that withholds the resource, or undefined when it may go on. */
  decide(resourceType: string, resource: object): WithholdDecision | undefined;
}

export function compileWithholdPolicy(specs: readonly WithholdRuleSpec[]): WithholdPolicy {
  const rules: { spec: WithholdRuleSpec; fn: CompiledPath }[] = specs.map((spec) => ({
    spec,
    fn: compileFhirPath(spec.when),
  }));
  return {
    decide(resourceType, resource) {
      for (const rule of rules) {
        if (rule.spec.resourceType !== resourceType) continue;
        if (isTrue(rule.fn(resource))) return { withheld: true, rule: rule.spec };
      }
      return undefined;
    },
  };
}
