import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

const LISTS_FILE = fileURLToPath(new URL('../../../config/restricted-zip3.json', import.meta.url));

const ListsSchema = z.object({
  lists: z.record(
    z.string(),
    z.object({
      census: z.number().nullable(),
      source: z.string(),
      prefixes: z.array(z.string().regex(/^\d{3}$/)),
    }),
  ),
});

/** Names of the restricted ZIP3 lists shipped in config/restricted-zip3.json. */
export function restrictedZip3ListNames(): string[] {
  return Object.keys(readLists().lists);
}

/** The union of the named lists; unknown names are reported against `stages.pseudonymize.restrictedZip3`. */
export function loadRestrictedZip3(
  names: readonly string[],
  issues: { key: string; message: string }[],
): ReadonlySet<string> {
  const { lists } = readLists();
  const out = new Set<string>();
  names.forEach((name, index) => {
    const list = lists[name];
    if (!list) {
      issues.push({
        key: `stages.pseudonymize.restrictedZip3[${index}]`,
        message: `unknown list ${name}; known: ${Object.keys(lists).join(', ')}`,
      });
      return;
    }
    for (const prefix of list.prefixes) out.add(prefix);
  });
  return out;
}

let cache: z.infer<typeof ListsSchema> | undefined;
function readLists(): z.infer<typeof ListsSchema> {
  cache ??= ListsSchema.parse(JSON.parse(readFileSync(LISTS_FILE, 'utf8')));
  return cache;
}
