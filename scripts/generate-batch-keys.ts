/**
 * Generates a batch signing key: a private JWK (ES256 or EdDSA) for `stages.batch.signingKeyFile`, and
 * its public half added to a JWKS that receivers trust (`sluice sandbox crm --batch-jwks FILE`). Keys
 * rotate by adding a new kid to the JWKS, switching the flow to it, and retiring the old one later.
 *
 *   node scripts/generate-batch-keys.ts OUT_DIR [ES256|EdDSA]
 *
 * The keys shipped in examples/keys were made with this script; they are test keys for the sandbox only.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';

const [outDir = 'keys', alg = 'ES256'] = process.argv.slice(2);
if (alg !== 'ES256' && alg !== 'EdDSA') {
  process.stderr.write('alg must be ES256 or EdDSA\n');
  process.exit(2);
}
const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
const kid = `batch-${alg.toLowerCase()}-${new Date().toISOString().slice(0, 10)}`;
const privateJwk = { ...(await exportJWK(privateKey)), alg, kid, use: 'sig' };
const publicJwk = { ...(await exportJWK(publicKey)), alg, kid, use: 'sig' };
mkdirSync(outDir, { recursive: true });
writeFileSync(
  join(outDir, `batch-signing-${alg.toLowerCase()}.private.jwk.json`),
  `${JSON.stringify(privateJwk, null, 2)}\n`,
  {
    mode: 0o600,
  },
);
const jwksPath = join(outDir, 'batch-signing.jwks.json');
const jwks = existsSync(jwksPath)
  ? (JSON.parse(readFileSync(jwksPath, 'utf8')) as { keys: unknown[] })
  : { keys: [] };
jwks.keys = [...jwks.keys.filter((k) => (k as { kid?: string }).kid !== kid), publicJwk];
writeFileSync(jwksPath, `${JSON.stringify(jwks, null, 2)}\n`);
process.stdout.write(`wrote ${kid} to ${outDir}\n`);
