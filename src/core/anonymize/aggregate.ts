import { SluiceError } from '../errors/index.ts';
import type { DataRecord, QiValue } from './risk.ts';
import { SUPPRESSED_VALUE } from './risk.ts';

/**
 * Aggregated releases: counts by quasi-identifier groups with small-cell suppression. Counts from 1 to
 * k-1 are hidden (primary suppression), margins and the grand total included; then further cells are
 * hidden (complementary suppression) until no hidden count can be worked out from the published ones.
 *
 * For a two-way table with margins, each row and each column is one equation (cells sum to the total).
 * Seen as a bipartite graph (rows and columns as nodes, hidden cells as edges), a hidden cell is fixed by
 * the equations exactly when it lies on no cycle of hidden cells; so each such cell is closed into a cycle
 * along the cheapest path of published cells (cost = count: the least information lost; zero cells and
 * the grand total only when nothing else connects). Bounds from non-negativity are not analysed.
 */

export type Suppression = 'primary' | 'complementary';

export interface OneWayTable {
  readonly dimension: string;
  readonly k: number;
  readonly categories: readonly string[];
  /** Published counts; null where hidden. */
  readonly counts: readonly (number | null)[];
  readonly suppression: readonly (Suppression | null)[];
  readonly total: number | null;
  readonly totalSuppression: Suppression | null;
}

export interface TwoWayTable {
  readonly rowDimension: string;
  readonly colDimension: string;
  readonly k: number;
  readonly rows: readonly string[];
  readonly cols: readonly string[];
  /** Published counts, rows × cols; null where hidden. */
  readonly cells: readonly (readonly (number | null)[])[];
  readonly rowTotals: readonly (number | null)[];
  readonly colTotals: readonly (number | null)[];
  readonly total: number | null;
  /** Suppression of every position of the (rows+1) × (cols+1) grid; the last row and column are totals. */
  readonly suppression: readonly (readonly (Suppression | null)[])[];
  readonly suppressed: { readonly primary: number; readonly complementary: number };
}

function label(value: QiValue): string {
  return value === null || value === undefined || value === '' ? SUPPRESSED_VALUE : String(value);
}

function checkK(k: number): void {
  if (!Number.isInteger(k) || k < 2) {
    throw new SluiceError(
      'ANON_CONTEXT_INVALID',
      'The small-cell threshold k must be an integer of at least 2.',
      {
        details: { k },
      },
    );
  }
}

const isSmall = (count: number, k: number): boolean => count > 0 && count < k;

/** Counts by one quasi-identifier, small cells hidden. `categories` fixes the order and shows zero cells. */
export function aggregateOneWay(
  records: readonly DataRecord[],
  dimension: string,
  k: number,
  categories?: readonly string[],
): OneWayTable {
  checkK(k);
  const counts = new Map<string, number>((categories ?? []).map((c) => [c, 0]));
  for (const record of records) {
    const key = label(record[dimension]);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const cats = categories ? [...counts.keys()] : [...counts.keys()].sort();
  return suppressOneWay(
    dimension,
    cats,
    cats.map((c) => counts.get(c) ?? 0),
    k,
  );
}

export function suppressOneWay(
  dimension: string,
  categories: readonly string[],
  values: readonly number[],
  k: number,
): OneWayTable {
  checkK(k);
  const total = values.reduce((a, b) => a + b, 0);
  // Position `values.length` stands for the total: one equation over all positions.
  const all = [...values, total];
  const marks: (Suppression | null)[] = all.map((v) => (isSmall(v, k) ? 'primary' : null));
  if (marks.filter((m) => m !== null).length === 1) {
    const candidates = values
      .map((v, i) => ({ v, i }))
      .filter(({ i }) => marks[i] === null)
      .sort((a, b) => weight(a.v, total) - weight(b.v, total) || a.i - b.i);
    const pick = candidates[0];
    marks[pick ? pick.i : values.length] = 'complementary';
  }
  return {
    dimension,
    k,
    categories: [...categories],
    counts: values.map((v, i) => (marks[i] ? null : v)),
    suppression: marks.slice(0, values.length),
    total: marks[values.length] ? null : total,
    totalSuppression: marks[values.length] ?? null,
  };
}

/** Zero cells protect little (the attacker knows counts are not negative): used only when nothing else is. */
function weight(value: number, total: number): number {
  return value === 0 ? total + 1 : value;
}

/** Counts by two quasi-identifiers with margins, small cells hidden with complementary suppression. */
export function aggregateTwoWay(
  records: readonly DataRecord[],
  rowDimension: string,
  colDimension: string,
  k: number,
  categories: { readonly rows?: readonly string[]; readonly cols?: readonly string[] } = {},
): TwoWayTable {
  checkK(k);
  const rowSet = new Set(categories.rows ?? []);
  const colSet = new Set(categories.cols ?? []);
  for (const record of records) {
    rowSet.add(label(record[rowDimension]));
    colSet.add(label(record[colDimension]));
  }
  const rows = categories.rows ? [...rowSet] : [...rowSet].sort();
  const cols = categories.cols ? [...colSet] : [...colSet].sort();
  const counts = rows.map(() => cols.map(() => 0));
  for (const record of records) {
    const r = rows.indexOf(label(record[rowDimension]));
    const c = cols.indexOf(label(record[colDimension]));
    const row = counts[r] as number[];
    row[c] = (row[c] ?? 0) + 1;
  }
  return suppressTwoWay(rowDimension, colDimension, rows, cols, counts, k);
}

export function suppressTwoWay(
  rowDimension: string,
  colDimension: string,
  rows: readonly string[],
  cols: readonly string[],
  counts: readonly (readonly number[])[],
  k: number,
): TwoWayTable {
  checkK(k);
  const grid = withMargins(counts, rows.length, cols.length);
  const R = rows.length + 1;
  const C = cols.length + 1;
  const total = grid[R - 1]?.[C - 1] ?? 0;
  const marks: (Suppression | null)[][] = grid.map((row) =>
    row.map((v) => (isSmall(v, k) ? 'primary' : null)),
  );
  const cost = (r: number, c: number): number => {
    const v = grid[r]?.[c] ?? 0;
    if (r === R - 1 && c === C - 1) return 4 * (total + 1);
    return weight(v, 2 * total);
  };
  // Close every bridge (a hidden cell on no cycle) into a cycle; each round removes at least one bridge.
  for (;;) {
    const bridge = findBridge(marks, R, C);
    if (!bridge) break;
    const path = cheapestPath(marks, R, C, bridge, cost);
    if (path.length === 0) {
      // Cannot happen with margins (there is always another route); fail closed all the same.
      for (const row of marks) {
        for (let c = 0; c < row.length; c++) row[c] ??= 'complementary';
      }
      break;
    }
    for (const [r, c] of path) {
      const row = marks[r] as (Suppression | null)[];
      if (row[c] === null) row[c] = 'complementary';
    }
  }
  const published = (r: number, c: number): number | null => (marks[r]?.[c] ? null : (grid[r]?.[c] ?? 0));
  let primary = 0;
  let complementary = 0;
  for (const row of marks) {
    for (const m of row) {
      if (m === 'primary') primary++;
      else if (m === 'complementary') complementary++;
    }
  }
  return {
    rowDimension,
    colDimension,
    k,
    rows: [...rows],
    cols: [...cols],
    cells: rows.map((_, r) => cols.map((_, c) => published(r, c))),
    rowTotals: rows.map((_, r) => published(r, C - 1)),
    colTotals: cols.map((_, c) => published(R - 1, c)),
    total: published(R - 1, C - 1),
    suppression: marks,
    suppressed: { primary, complementary },
  };
}

function withMargins(counts: readonly (readonly number[])[], nRows: number, nCols: number): number[][] {
  const grid: number[][] = [];
  for (let r = 0; r < nRows; r++) {
    const row = Array.from({ length: nCols }, (_, c) => counts[r]?.[c] ?? 0);
    row.push(row.reduce((a, b) => a + b, 0));
    grid.push(row);
  }
  const totals = Array.from({ length: nCols + 1 }, (_, c) =>
    grid.reduce((sum, row) => sum + (row[c] ?? 0), 0),
  );
  grid.push(totals);
  return grid;
}

type Cell = readonly [row: number, col: number];

/** A hidden cell lying on no cycle of hidden cells (row node r ↔ column node c), or undefined. */
function findBridge(
  marks: readonly (readonly (Suppression | null)[])[],
  R: number,
  C: number,
): Cell | undefined {
  // Nodes: rows 0..R-1, columns R..R+C-1. Tarjan's bridge finding (tables are small enough to recurse).
  const n = R + C;
  const adj: number[][] = Array.from({ length: n }, () => []);
  for (let r = 0; r < R; r++) {
    for (let c = 0; c < C; c++) {
      if (marks[r]?.[c]) {
        (adj[r] as number[]).push(R + c);
        (adj[R + c] as number[]).push(r);
      }
    }
  }
  const disc = new Array<number>(n).fill(-1);
  const low = new Array<number>(n).fill(0);
  let time = 0;
  let found: Cell | undefined;
  const visit = (u: number, parent: number): void => {
    disc[u] = low[u] = time++;
    let skippedParent = false;
    for (const v of adj[u] as number[]) {
      if (found) return;
      if (v === parent && !skippedParent) {
        skippedParent = true;
        continue;
      }
      if (disc[v] === -1) {
        visit(v, u);
        // The subtree's low values are incomplete once a bridge is found: stop, do not judge (u, v).
        if (found) return;
        low[u] = Math.min(low[u] as number, low[v] as number);
        if ((low[v] as number) > (disc[u] as number)) {
          found = u < R ? [u, v - R] : [v, u - R];
          return;
        }
      } else {
        low[u] = Math.min(low[u] as number, disc[v] as number);
      }
    }
  };
  for (let u = 0; u < n && !found; u++) if (disc[u] === -1 && (adj[u] as number[]).length > 0) visit(u, -1);
  return found;
}

/** The cheapest path of cells from row node r to column node c avoiding the cell (r, c) itself. */
function cheapestPath(
  marks: readonly (readonly (Suppression | null)[])[],
  R: number,
  C: number,
  [br, bc]: Cell,
  cost: (r: number, c: number) => number,
): Cell[] {
  const n = R + C;
  const dist = new Array<number>(n).fill(Number.POSITIVE_INFINITY);
  const prev = new Array<number>(n).fill(-1);
  const done = new Array<boolean>(n).fill(false);
  dist[br] = 0;
  const edgeCost = (a: number, b: number): number => {
    const [r, c] = a < R ? [a, b - R] : [b, a - R];
    if (r === br && c === bc) return Number.POSITIVE_INFINITY;
    return marks[r]?.[c] ? 0 : cost(r, c);
  };
  for (;;) {
    let u = -1;
    for (let i = 0; i < n; i++)
      if (!done[i] && (u === -1 || (dist[i] as number) < (dist[u] as number))) u = i;
    if (u === -1 || !Number.isFinite(dist[u] as number)) break;
    done[u] = true;
    if (u === R + bc) break;
    const neighbours =
      u < R ? Array.from({ length: C }, (_, c) => R + c) : Array.from({ length: R }, (_, r) => r);
    for (const v of neighbours) {
      const d = (dist[u] as number) + edgeCost(u, v);
      if (d < (dist[v] as number)) {
        dist[v] = d;
        prev[v] = u;
      }
    }
  }
  const target = R + bc;
  if (!Number.isFinite(dist[target] as number)) return [];
  const path: Cell[] = [];
  for (let v = target; v !== br; v = prev[v] as number) {
    const u = prev[v] as number;
    path.push(u < R ? [u, v - R] : [v, u - R]);
  }
  return path;
}

/**
 * An independent audit of a suppression pattern: the hidden positions of a (rows+1) × (cols+1) grid
 * whose value the published row, column and grand totals determine (Gaussian elimination over the
 * table's equations). Empty for a safe pattern.
 */
export function determinedCells(hidden: readonly (readonly boolean[])[]): Cell[] {
  const R = hidden.length;
  const C = hidden[0]?.length ?? 0;
  const unknowns: Cell[] = [];
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) if (hidden[r]?.[c]) unknowns.push([r, c]);
  // One equation per row and per column: Σ cells − total = 0 (totals in the last row / column).
  const equations: number[][] = [];
  const coeff = (inLine: boolean, isTotal: boolean): number => (inLine ? (isTotal ? -1 : 1) : 0);
  for (let r = 0; r < R; r++) {
    equations.push(unknowns.map(([ur, uc]) => coeff(ur === r, uc === C - 1)));
  }
  for (let c = 0; c < C; c++) {
    equations.push(unknowns.map(([ur, uc]) => coeff(uc === c, ur === R - 1)));
  }
  const full = rank(equations);
  return unknowns.filter((_, i) => rank(equations.map((row) => row.filter((_, j) => j !== i))) < full);
}

function rank(matrix: readonly (readonly number[])[]): number {
  const m = matrix.map((row) => [...row]);
  const cols = m[0]?.length ?? 0;
  let r = 0;
  for (let c = 0; c < cols && r < m.length; c++) {
    let pivot = r;
    for (let i = r; i < m.length; i++) {
      if (Math.abs(m[i]?.[c] ?? 0) > Math.abs(m[pivot]?.[c] ?? 0)) pivot = i;
    }
    if (Math.abs(m[pivot]?.[c] ?? 0) < 1e-9) continue;
    [m[r], m[pivot]] = [m[pivot] as number[], m[r] as number[]];
    const pr = m[r] as number[];
    for (let i = 0; i < m.length; i++) {
      if (i === r) continue;
      const row = m[i] as number[];
      const f = (row[c] ?? 0) / (pr[c] as number);
      if (f !== 0) for (let j = c; j < cols; j++) row[j] = (row[j] ?? 0) - f * (pr[j] ?? 0);
    }
    r++;
  }
  return r;
}
