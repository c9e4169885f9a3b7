export {
  type ConsentDecision,
  type ConsentRequest,
  DEFAULT_BASE_PERMIT_PURPOSES,
  type DecisionBasis,
  type DecisionValue,
  type EvaluationPolicy,
  evaluateConsent,
  type SkipReason,
} from './evaluate.ts';
export { consentFromFhir, type FhirConsentOptions, POLICY_RULE_BASE } from './from-fhir.ts';
export { consentFromVeeva, type VeevaConsentOptions, veevaLineCode } from './from-veeva.ts';
export {
  type CodeRef,
  type ConsentActor,
  type ConsentSource,
  type ConsentState,
  type ConsentStatus,
  consentKey,
  consentRef,
  type DataRef,
  type Period,
  type Provision,
  type ProvisionType,
} from './model.ts';
export { PURPOSE_PARENT, purposeWithin } from './purpose.ts';
export { ConsentStore, type UpsertResult } from './store.ts';
export { VEEVA_CHANNEL_TABLE, type VeevaChannel, type VeevaChannelTable } from './veeva-channels.ts';
