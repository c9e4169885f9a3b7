/** Microsoft FHIR Tools for Anonymization configs, run unchanged (issue #8, "Profile format"). */
export {
  cryptoHash,
  dateShiftOffset,
  decryptFromBase64,
  encryptToBase64,
  transformReferenceId,
} from './algorithms.ts';
export {
  compileMsConfig,
  isMsConfig,
  MS_ENV,
  MS_METHODS,
  type MsConfig,
  type MsMethod,
  type MsParameters,
  type MsRule,
} from './config.ts';
export { MsAnonymizer, type MsAnonymizerOptions } from './engine.ts';
export { msAnonymizerForProfile } from './profile-run.ts';
