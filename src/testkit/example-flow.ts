import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadFlow, type ResolvedFlow } from '../engine/config/load-flow.ts';
import { REPO_ROOT } from './data.ts';

/** The example flow file (`examples/flows/epic-to-veeva.yaml`). */
export const EXAMPLE_FLOW = join(REPO_ROOT, 'examples', 'flows', 'epic-to-veeva.yaml');

/**
 * The example flow's text with its key and policy file paths made absolute, so tests can write edited
 * copies of it anywhere.
 */
export function exampleFlowText(): string {
  return readFileSync(EXAMPLE_FLOW, 'utf8')
    .replaceAll('../keys/', `${join(REPO_ROOT, 'examples', 'keys')}/`)
    .replaceAll('../../config/', `${join(REPO_ROOT, 'config')}/`);
}

/** The environment the example flow resolves against: these sandboxes, a fresh pseudonym key, state in `dir`. */
export function sandboxEnv(
  dir: string,
  urls: { readonly ehr: string; readonly crm: string },
): Record<string, string> {
  return {
    SLUICE_EHR_URL: urls.ehr,
    SLUICE_CRM_URL: urls.crm,
    SLUICE_PSEUDONYM_KEY: randomBytes(32).toString('base64'),
    SLUICE_STATE_DIR: join(dir, 'state'),
  };
}

/**
 * Writes a flow file into `dir` and loads it against sandboxes at these URLs (by default with a fresh
 * random pseudonym key and its state under `dir/state`: `sandboxEnv`).
 */
export function loadFlowAgainst(
  dir: string,
  text: string,
  urls: { readonly ehr: string; readonly crm: string },
  name = 'flow.yaml',
  env: Record<string, string> = sandboxEnv(dir, urls),
): ResolvedFlow {
  writeFileSync(join(dir, name), text);
  return loadFlow(join(dir, name), { env });
}
