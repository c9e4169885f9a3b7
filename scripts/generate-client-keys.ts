/**
 * Generates a backend-services client key pair for the EHR side: a private JWK for the flow file, and
 * its public half added to a JWKS to register with the EHR (or with `sluice sandbox ehr --clients`).
 *
 *   node scripts/generate-client-keys.ts OUT_DIR [RS384|ES384]
 *
 * The keys shipped in examples/keys were made with this script; they are test keys for the sandbox only.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';

const [outDir = 'keys', alg = 'RS384'] = process.argv.slice(2);
if (alg !== 'RS384' && alg !== 'ES384') {
  console.error('alg must be RS384 or ES384');
  process.exit(2);
}
const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, modulusLength: 2048 });
const kid = `${alg.toLowerCase()}-${new Date().toISOString().slice(0, 10)}`;
const privateJwk = { ...(await exportJWK(privateKey)), alg, kid, use: 'sig' };
const publicJwk = { ...(await exportJWK(publicKey)), alg, kid, use: 'sig' };
mkdirSync(outDir, { recursive: true });
const name = alg.toLowerCase();
writeFileSync(
  join(outDir, `ehr-client-${name}.private.jwk.json`),
  `${JSON.stringify(privateJwk, null, 2)}\n`,
  { mode: 0o600 },
);
// The public half joins the client's JWKS (created if missing), which is what the EHR registers.
const jwksPath = join(outDir, 'ehr-client.jwks.json');
const jwks: { keys: unknown[] } = existsSync(jwksPath)
  ? JSON.parse(readFileSync(jwksPath, 'utf8'))
  : { keys: [] };
jwks.keys.push(publicJwk);
writeFileSync(jwksPath, `${JSON.stringify(jwks, null, 2)}\n`);
console.log(`wrote ${name} private key (kid ${kid}) and added its public key to ${jwksPath}`);
