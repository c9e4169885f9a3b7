/** String comparison and normalisation for identity matching. Pure, no PHI leaves these functions. */

/** Jaro–Winkler similarity in [0, 1] (prefix scale 0.1, up to 4 characters). */
export function jaroWinkler(a: string, b: string): number {
  if (a === b) return a.length === 0 ? 0 : 1;
  if (a.length === 0 || b.length === 0) return 0;
  const window = Math.max(0, Math.floor(Math.max(a.length, b.length) / 2) - 1);
  const aMatched = new Array<boolean>(a.length).fill(false);
  const bMatched = new Array<boolean>(b.length).fill(false);
  let matches = 0;
  for (let i = 0; i < a.length; i++) {
    const lo = Math.max(0, i - window);
    const hi = Math.min(b.length - 1, i + window);
    for (let j = lo; j <= hi; j++) {
      if (bMatched[j] || a[i] !== b[j]) continue;
      aMatched[i] = true;
      bMatched[j] = true;
      matches++;
      break;
    }
  }
  if (matches === 0) return 0;
  let transpositions = 0;
  let k = 0;
  for (let i = 0; i < a.length; i++) {
    if (!aMatched[i]) continue;
    while (!bMatched[k]) k++;
    if (a[i] !== b[k]) transpositions++;
    k++;
  }
  const m = matches;
  const jaro = (m / a.length + m / b.length + (m - transpositions / 2) / m) / 3;
  let prefix = 0;
  while (prefix < 4 && prefix < a.length && prefix < b.length && a[prefix] === b[prefix]) prefix++;
  return jaro + prefix * 0.1 * (1 - jaro);
}

/** Lower case, accents and punctuation removed, whitespace collapsed: `Adán O'Brien` → `adan obrien`. */
export function normaliseName(value: string | undefined): string {
  if (value === undefined) return '';
  return value
    .normalize('NFKD')
    .replace(/\p{M}+/gu, '')
    .toLowerCase()
    .replace(/[^a-z\s-]/g, '')
    .replace(/[-\s]+/g, ' ')
    .trim();
}

/** Synthea-style numeric suffixes (`Abdul218`) are dropped by `normaliseName`; this strips them from a line. */
export function normaliseAddressLine(value: string | undefined): string {
  if (value === undefined) return '';
  return value
    .toLowerCase()
    .replace(/[.,#]/g, ' ')
    .replace(/\b(street)\b/g, 'st')
    .replace(/\b(avenue)\b/g, 'ave')
    .replace(/\b(road)\b/g, 'rd')
    .replace(/\b(suite|apt|unit)\b/g, 'unit')
    .replace(/\s+/g, ' ')
    .trim();
}

export function zip5(value: string | undefined): string | undefined {
  return value === undefined ? undefined : /^\d{5}/.exec(value.trim())?.[0];
}
