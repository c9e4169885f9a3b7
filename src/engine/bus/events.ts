/**
 * Change events on the bus: a source record (with where it was read) or a deletion, sealed under the
 * flow's `state.encryption` key (AES-256-GCM) and bound to the flow, the resource type and the event
 * id, so the bus neither reads them nor can anyone without the key forge or move one. Headers carry
 * only the kind and a keyed-hash id. An event that does not open is not trusted: it goes on as a record
 * the pipeline quarantines, saying why in its origin (no content).
 */

import { createHmac, hkdfSync } from 'node:crypto';
import type { OutgoingEvent, StoredEvent } from '../../adapters/nats-bus/event-bus.ts';
import { isSluiceError } from '../../core/errors/index.ts';
import type { SourceDeletion, SourceRecord } from '../../core/ports/source.ts';
import { refOf, versionKeyOf } from '../pipeline/version-key.ts';
import { isSealed, openPayload, type PayloadKey, sealPayload } from '../store/payload-cipher.ts';

/** The header that says what an event carries (`record` or `deletion`). */
const KIND = 'Sluice-Event';
/**
 * The event's id, which the bus de-duplicates on and stores: a keyed hash of the record and version,
 * so it names no one.
 */
const ID = 'Nats-Msg-Id';

const aad = (flow: string, type: string, id: string): string => `bus\u0000${flow}\u0000${type}\u0000${id}`;

/** The key that names events, derived once per sealing key (the same record and version, the same id). */
const idKeys = new WeakMap<PayloadKey, Buffer>();
function idKey(key: PayloadKey): Buffer {
  let derived = idKeys.get(key);
  if (derived === undefined) {
    derived = Buffer.from(hkdfSync('sha256', key.key, Buffer.alloc(0), 'sluice bus event id', 32));
    idKeys.set(key, derived);
  }
  return derived;
}

/** The id of an event: HMAC-SHA256 of what it is about, so a patient's id never appears on the bus. */
function eventId(key: PayloadKey, about: string): string {
  return createHmac('sha256', idKey(key)).update(about).digest('base64url');
}

/**
 * What names an event beside its content: usually nothing; for a record read again after
 * `sluice ingest --reset`, that ingest, so the bus stores it even if it stored the same version within
 * its duplicate window — a snapshot marker promises every record follows it.
 */
const scoped = (about: string, snapshot: string | undefined): string =>
  snapshot === undefined ? about : `${about}|snapshot:${snapshot}`;

/**
 * The event of a source record: named by the record and its version (and the reset ingest that read
 * it, if any), so publishing it again is a no-op; the record and where it was read (which may name
 * it) travel sealed.
 */
export function recordEvent(
  key: PayloadKey,
  flow: string,
  record: SourceRecord,
  snapshot?: string,
): OutgoingEvent {
  const id = eventId(
    key,
    scoped(`${refOf(record.resource) ?? '-'}|${versionKeyOf(record.resource)}`, snapshot),
  );
  const body: RecordBody = { origin: record.origin, resource: record.resource };
  return {
    id,
    headers: { [KIND]: 'record' },
    data: sealPayload(key, JSON.stringify(body), aad(flow, record.stream, id)),
  };
}

/** The event of a deletion the source reported (bulk export `deleted`). */
export function deletionEvent(
  key: PayloadKey,
  flow: string,
  stream: string,
  deletion: SourceDeletion,
  snapshot?: string,
): OutgoingEvent {
  const id = eventId(
    key,
    scoped(`deleted:${deletion.resourceType}/${deletion.id}|${deletion.at ?? ''}`, snapshot),
  );
  return {
    id,
    headers: { [KIND]: 'deletion' },
    data: sealPayload(key, JSON.stringify(deletion), aad(flow, stream, id)),
  };
}

interface RecordBody {
  readonly origin: string;
  readonly resource: unknown;
}

export type OpenedEvent =
  | { readonly kind: 'record'; readonly record: SourceRecord }
  | { readonly kind: 'deletion'; readonly deletion: SourceDeletion };

/**
 * Opens a stored event. One that is unsealed, sealed under another key, altered or moved comes back as
 * a record whose resource is its raw text: the pipeline quarantines it (REC_UNPARSEABLE) with the
 * reason in its origin.
 */
export function openEvent(
  key: PayloadKey,
  flow: string,
  stream: string,
  bus: string,
  event: StoredEvent,
): OpenedEvent {
  const where = `bus ${bus} #${event.seq}`;
  const untrusted = (why: string): OpenedEvent => ({
    kind: 'record',
    record: { stream, resource: event.data, origin: `${where} (${why})` },
  });
  const kind = event.headers[KIND];
  const id = event.headers[ID];
  if ((kind !== 'record' && kind !== 'deletion') || id === undefined)
    return untrusted('not a Sluice change event');
  if (!isSealed(event.data)) return untrusted('not sealed under the flow key');
  let text: string;
  try {
    text = openPayload(key, event.data, aad(flow, stream, id), `Event #${event.seq}`);
  } catch (err) {
    return untrusted(isSluiceError(err) ? err.code : 'does not open');
  }
  const origin = (inner: unknown): string =>
    typeof inner === 'string' && inner ? `${inner} via ${where}` : where;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return untrusted('a sealed event that is not JSON');
  }
  if (kind === 'deletion') {
    const d = body as Partial<SourceDeletion>;
    if (typeof d.resourceType === 'string' && typeof d.id === 'string') {
      return {
        kind: 'deletion',
        deletion: {
          resourceType: d.resourceType,
          id: d.id,
          ...(typeof d.at === 'string' ? { at: d.at } : {}),
          origin: origin(d.origin),
        },
      };
    }
    return untrusted('a deletion event without a resource type and id');
  }
  const r = body as Partial<RecordBody>;
  if (r === null || typeof r !== 'object' || !('resource' in r))
    return untrusted('a record event without a record');
  return { kind: 'record', record: { stream, resource: r.resource, origin: origin(r.origin) } };
}
