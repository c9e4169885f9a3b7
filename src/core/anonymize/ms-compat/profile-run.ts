import { SluiceError } from '../../errors/index.ts';
import type { Profile } from '../profile.ts';
import { compileMsConfig } from './config.ts';
import { MsAnonymizer, type MsAnonymizerOptions } from './engine.ts';

/**
 * The engine for a profile `loadProfile` recognised as a Microsoft-format config, with its keys from the
 * config's `parameters` unless the environment overrides them (`SLUICE_MS_CRYPTOHASH_KEY`,
 * `SLUICE_MS_DATESHIFT_KEY`, `SLUICE_MS_ENCRYPT_KEY`). Callers run `anonymize` of the result instead of
 * the Sluice pipeline for such profiles.
 */
export function msAnonymizerForProfile(
  profile: Profile,
  env: Readonly<Record<string, string | undefined>>,
  options: MsAnonymizerOptions = {},
): MsAnonymizer {
  if (!profile.msCompat) {
    throw new SluiceError(
      'ANON_MS_CONFIG_INVALID',
      `The profile ${profile.source} is not a Microsoft-format config.`,
      {
        details: { source: profile.source },
      },
    );
  }
  return new MsAnonymizer(compileMsConfig(profile.msCompat.document, profile.msCompat.source, env), options);
}
