import { isEarlierStamp } from '../../core/fhir/instant.ts';
import { isJsonObject, str } from '../../core/fhir/resource.ts';
import { stableHash } from './stable-hash.ts';

/**
 * Identifies one version of a source record: `versionId|lastUpdated` when the server gives them, else
 * a hash of the content (bulk servers may omit `meta`). Equal keys mean "already processed".
 */
export function versionKeyOf(resource: unknown): string {
  if (isJsonObject(resource) && isJsonObject(resource.meta)) {
    const versionId = str(resource.meta.versionId);
    const lastUpdated = str(resource.meta.lastUpdated);
    if (versionId !== undefined || lastUpdated !== undefined)
      return `v:${versionId ?? ''}|${lastUpdated ?? ''}`;
  }
  return `h:${stableHash(resource)}`;
}

/** `Type/id` of a source record, when it has both. */
export function refOf(resource: unknown): string | undefined {
  if (!isJsonObject(resource)) return undefined;
  const type = str(resource.resourceType);
  const id = str(resource.id);
  return type !== undefined && id !== undefined ? `${type}/${id}` : undefined;
}

/** True when version key `a` is older than `b` (both `v:versionId|lastUpdated` with a timestamp). */
export function isOlderVersion(a: string, b: string): boolean {
  const at = (key: string): string | undefined =>
    key.startsWith('v:') ? key.slice(key.indexOf('|') + 1) || undefined : undefined;
  // As times: `…T10:00:00+05:00` is older than `…T06:00:00Z`, `…T06:00:00Z` than `…T06:00:00.120Z`.
  return isEarlierStamp(at(a), at(b));
}
