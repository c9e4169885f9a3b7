export { canonicalHash, canonicalJson } from './canonical-json.ts';
export {
  type BatchEnvelope,
  buildEnvelope,
  ENVELOPE_ALGORITHMS,
  ENVELOPE_TYP,
  type EnvelopeAlg,
  type EnvelopeItem,
  type SigningKey,
  signEnvelope,
  type VerifiedEnvelope,
  verifyEnvelope,
} from './envelope.ts';
export {
  type Batch,
  type BatchKey,
  batchIdFor,
  batchKeyFromDecision,
  batchKeyString,
  type GroupOptions,
  groupIntoBatches,
} from './group.ts';
