import { SluiceError } from '../core/errors/index.ts';
import { REASON_CODE_PATTERN } from '../engine/config/flow-schema.ts';

/** The error for a `--reason` that is not a short lower-case code (undefined when it is one). */
export function invalidReasonCode(reason: string): SluiceError | undefined {
  return REASON_CODE_PATTERN.test(reason)
    ? undefined
    : new SluiceError(
        'CFG_ARGUMENTS_INVALID',
        '--reason must be a short lower-case code (letters, digits, dashes).',
      );
}
