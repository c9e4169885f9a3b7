/**
 * Generates an audit checkpoint signing key (Ed25519): the private JWK for `audit.signingKeyFile`, and
 * its public half added to a JWKS (`audit.verifyKeysFile`) that `sluice audit verify` trusts. Keep old
 * kids in the JWKS after a rotation so older checkpoints still verify.
 *
 *   node scripts/generate-audit-key.ts OUT_DIR
 *
 * The key shipped in examples/keys was made with this script; it is a test key for the demo only.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateCheckpointKey } from '../src/engine/audit/checkpoint.ts';

const [outDir = 'keys'] = process.argv.slice(2);
const kid = `audit-ed25519-${new Date().toISOString().slice(0, 10)}`;
const { privateJwk, publicJwk } = await generateCheckpointKey(kid, 'Ed25519');
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'audit-ed25519.private.jwk.json'), `${JSON.stringify(privateJwk, null, 2)}\n`, {
  mode: 0o600,
});
const jwksPath = join(outDir, 'audit.jwks.json');
const jwks = existsSync(jwksPath)
  ? (JSON.parse(readFileSync(jwksPath, 'utf8')) as { keys: unknown[] })
  : { keys: [] };
jwks.keys = [...jwks.keys.filter((k) => (k as { kid?: string }).kid !== kid), publicJwk];
writeFileSync(jwksPath, `${JSON.stringify(jwks, null, 2)}\n`);
process.stdout.write(`wrote ${kid} to ${outDir}\n`);
