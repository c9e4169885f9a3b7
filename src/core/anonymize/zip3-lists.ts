import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { SluiceError } from '../errors/index.ts';
import type { RestrictedZip3 } from './context.ts';

/**
 * The restricted ZIP3 lists of Safe Harbor, as kept in config/restricted-zip3.json. A profile names the
 * lists it generalises with; their ids travel with the prefixes so every audit entry can name them.
 */

const LISTS_FILE = fileURLToPath(new URL('../../../config/restricted-zip3.json', import.meta.url));

const ListsSchema = z.object({
  lists: z.record(z.string(), z.object({ prefixes: z.array(z.string().regex(/^\d{3}$/)) })),
});

let cache: Readonly<Record<string, readonly string[]>> | undefined;

/** Every list in the config, by id. */
export function zip3Lists(): Readonly<Record<string, readonly string[]>> {
  if (cache) return cache;
  let parsed: z.infer<typeof ListsSchema>;
  try {
    parsed = ListsSchema.parse(JSON.parse(readFileSync(LISTS_FILE, 'utf8')));
  } catch (err) {
    throw new SluiceError('CFG_FILE_MISSING', 'The restricted ZIP3 lists could not be read.', {
      cause: err,
      details: { file: LISTS_FILE },
    });
  }
  cache = Object.fromEntries(Object.entries(parsed.lists).map(([id, list]) => [id, list.prefixes]));
  return cache;
}

/** The union of the named lists; throws ANON_CONTEXT_INVALID naming an unknown list. */
export function restrictedZip3Of(listIds: readonly string[]): RestrictedZip3 {
  const lists = zip3Lists();
  const prefixes = new Set<string>();
  for (const id of listIds) {
    const list = lists[id];
    if (!list) {
      throw new SluiceError('ANON_CONTEXT_INVALID', `Unknown restricted ZIP3 list ${id}.`, {
        details: { list: id, known: Object.keys(lists) },
      });
    }
    for (const prefix of list) prefixes.add(prefix);
  }
  return { listIds: [...listIds], prefixes };
}
