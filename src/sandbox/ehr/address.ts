import type { DiscoveryUrls } from './capability.ts';

export const FHIR_PREFIX = '/fhir';
export const TOKEN_PATH = '/auth/token';

/**
 * The sandbox's public URLs. The port is known only once the server listens, while routes are
 * registered before that, so routes read the URLs from here at request time.
 */
export class SandboxAddress implements DiscoveryUrls {
  #origin: string | undefined;

  set(origin: string): void {
    this.#origin = origin.replace(/\/+$/, '');
  }

  get origin(): string {
    if (this.#origin === undefined) throw new Error('The EHR sandbox is not listening yet.');
    return this.#origin;
  }

  /** FHIR base URL, no trailing slash. */
  get fhirBase(): string {
    return `${this.origin}${FHIR_PREFIX}`;
  }

  get tokenUrl(): string {
    return `${this.origin}${TOKEN_PATH}`;
  }
}
