/** The anonymization library: rule sets, the per-resource pipeline, the token vault, release risk and aggregates. */
export {
  aggregateOneWay,
  aggregateTwoWay,
  determinedCells,
  type OneWayTable,
  suppressOneWay,
  suppressTwoWay,
  type TwoWayTable,
} from './aggregate.ts';
export type { DataClass, SafeHarborCategory } from './classification.ts';
export { type Classification, classifyPath, enumerateElements } from './classify.ts';
export {
  type AnonymizeContext,
  type PseudonymKeyring,
  type RestrictedZip3,
  referenceIndex,
} from './context.ts';
export {
  type AnonymizedBundle,
  type AnonymizeResult,
  type AuditEntry,
  anonymize,
  anonymizeBundle,
  mergeAudit,
} from './pipeline.ts';
export {
  assessRisk,
  checkRisk,
  type DataRecord,
  enforceRisk,
  type RiskReport,
  type RiskThresholds,
  RiskThresholdsSchema,
  type RiskViolation,
  tuplesFromResources,
} from './risk.ts';
export { compileRuleSet, loadRuleSetFile, type MethodSpec, type RuleSet } from './rules.ts';
export {
  issueReidentifyPermission,
  type ReidentificationEvent,
  type ReidentifyResult,
  type Tokenizer,
  TokenVault,
} from './vault.ts';
