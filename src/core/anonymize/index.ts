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
export { anonymizeContextFromEnv } from './env-context.ts';
export { compileMsConfig, isMsConfig, MsAnonymizer, msAnonymizerForProfile } from './ms-compat/index.ts';
export {
  type AnonymizedBundle,
  type AnonymizeResult,
  type AuditEntry,
  anonymize,
  anonymizeBundle,
  mergeAudit,
} from './pipeline.ts';
export {
  compileProfile,
  loadProfile,
  PROFILE_NAMES,
  type Profile,
  type ProfileAggregation,
  type ProfileRisk,
} from './profile.ts';
export {
  type AggregateTable,
  aggregateRelease,
  assessPatientProfileRisk,
  assessProfileRisk,
  assessRelease,
  DEFAULT_RISK_THRESHOLDS,
  type PatientProfileRiskOptions,
  type ProfileWrite,
  type ReleaseRisk,
} from './release.ts';
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
export { restrictedZip3Of, zip3Lists } from './zip3-lists.ts';
