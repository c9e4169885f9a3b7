import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  aggregateOneWay,
  aggregateTwoWay,
  determinedCells,
  suppressOneWay,
  suppressTwoWay,
  type TwoWayTable,
} from './aggregate.ts';

function hiddenMask(table: TwoWayTable): boolean[][] {
  return table.suppression.map((row) => row.map((m) => m !== null));
}

/** The full true grid with margins, for checking what was published. */
function trueGrid(counts: number[][]): number[][] {
  const rows = counts.map((row) => [...row, row.reduce((a, b) => a + b, 0)]);
  const width = rows[0]?.length ?? 1;
  const totals = Array.from({ length: width }, (_, c) => rows.reduce((s, r) => s + (r[c] ?? 0), 0));
  return [...rows, totals];
}

function publishedGrid(t: TwoWayTable): (number | null)[][] {
  return [...t.cells.map((row, r) => [...row, t.rowTotals[r] ?? null]), [...t.colTotals, t.total]];
}

describe('the disclosure audit (determinedCells)', () => {
  it('finds a lone hidden cell in a row (recoverable by subtraction)', () => {
    // 2×2 table + margins; only cell (0,0) hidden.
    const hidden = [
      [true, false, false],
      [false, false, false],
      [false, false, false],
    ];
    expect(determinedCells(hidden)).toEqual([[0, 0]]);
  });

  it('accepts a rectangle of hidden cells, and finds a bridge between two rectangles', () => {
    const rect = [
      [true, true, false],
      [true, true, false],
      [false, false, false],
    ];
    expect(determinedCells(rect)).toEqual([]);
    // Two 2×2 cycles (rows 0-1 × cols 0-1, rows 2-3 × cols 2-3) joined by cell (1,2): every row and column
    // has two or more hidden cells, yet the joining cell is fixed by the equations.
    const h = Array.from({ length: 5 }, () => Array.from({ length: 5 }, () => false));
    for (const [r, c] of [
      [0, 0],
      [0, 1],
      [1, 0],
      [1, 1],
      [2, 2],
      [2, 3],
      [3, 2],
      [3, 3],
      [1, 2],
    ] as const) {
      (h[r] as boolean[])[c] = true;
    }
    expect(determinedCells(h)).toEqual([[1, 2]]);
  });
});

describe('two-way tables with complementary suppression', () => {
  const rows = ['0-17', '18-64', '65-89', '90+'];
  const cols = ['female', 'male'];
  const counts = [
    [12, 15],
    [40, 38],
    [22, 3],
    [2, 0],
  ];
  const table = suppressTwoWay('ageBand', 'gender', rows, cols, counts, 5);

  it('hides small cells and margins, and enough others that none can be recovered', () => {
    expect(table.cells[2]?.[1]).toBeNull(); // 3
    expect(table.cells[3]?.[0]).toBeNull(); // 2
    expect(table.rowTotals[3]).toBeNull(); // 90+ total = 2
    expect(determinedCells(hiddenMask(table))).toEqual([]);
    expect(table.suppressed.primary).toBe(3);
    expect(table.suppressed.complementary).toBeGreaterThan(0);
    // Everything published is true.
    const truth = trueGrid(counts);
    publishedGrid(table).forEach((row, r) => {
      row.forEach((v, c) => {
        if (v !== null) expect(v).toBe(truth[r]?.[c]);
      });
    });
    // The grand total is not needed to protect this table.
    expect(table.total).toBe(132);
  });

  it('shows that primary suppression alone would leak', () => {
    const primaryOnly = trueGrid(counts).map((row) => row.map((v) => v > 0 && v < 5));
    expect(determinedCells(primaryOnly).length).toBeGreaterThan(0);
  });

  it('aggregates records with fixed categories (zero cells shown)', () => {
    const t = aggregateTwoWay(
      [
        { band: '18-64', gender: 'female' },
        { band: '18-64', gender: 'female' },
        { band: '18-64', gender: 'male' },
      ],
      'band',
      'gender',
      2,
      { rows: ['0-17', '18-64'], cols: ['female', 'male'] },
    );
    expect(t.rows).toEqual(['0-17', '18-64']);
    expect(t.cells[0]).toEqual([0, 0]);
    expect(determinedCells(hiddenMask(t))).toEqual([]);
    expect(t.cells[1]?.[1]).toBeNull();
  });

  it('property: small cells hidden, published cells true, no hidden cell determined', () => {
    const tables = fc
      .record({ r: fc.integer({ min: 1, max: 5 }), c: fc.integer({ min: 1, max: 5 }) })
      .chain(({ r, c }) =>
        fc.record({
          counts: fc.array(fc.array(fc.integer({ min: 0, max: 12 }), { minLength: c, maxLength: c }), {
            minLength: r,
            maxLength: r,
          }),
          k: fc.integer({ min: 2, max: 6 }),
        }),
      );
    fc.assert(
      fc.property(tables, ({ counts, k }) => {
        const rowsL = counts.map((_, i) => `r${i}`);
        const colsL = (counts[0] ?? []).map((_, i) => `c${i}`);
        const t = suppressTwoWay('r', 'c', rowsL, colsL, counts, k);
        const truth = trueGrid(counts);
        const published = publishedGrid(t);
        truth.forEach((row, r) => {
          row.forEach((v, c) => {
            const p = published[r]?.[c];
            if (v > 0 && v < k) expect(p).toBeNull();
            if (p !== null) expect(p).toBe(v);
          });
        });
        expect(determinedCells(hiddenMask(t))).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });
});

describe('one-way tables', () => {
  it('hides a lone small cell together with the next smallest', () => {
    const t = suppressOneWay('zip3', ['019', '021', '024'], [3, 40, 12], 5);
    expect(t.counts).toEqual([null, 40, null]);
    expect(t.suppression).toEqual(['primary', null, 'complementary']);
    expect(t.total).toBe(55);
  });

  it('does not add complements when two cells are already hidden', () => {
    const t = suppressOneWay('zip3', ['a', 'b', 'c'], [3, 2, 40], 5);
    expect(t.counts).toEqual([null, null, 40]);
  });

  it('property: never exactly one unknown in the one equation', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 2, max: 6 }),
        (values, k) => {
          const t = suppressOneWay('d', values.map(String), values, k);
          const hidden = t.counts.filter((c) => c === null).length + (t.total === null ? 1 : 0);
          expect(hidden === 0 || hidden >= 2).toBe(true);
          values.forEach((v, i) => {
            if (v > 0 && v < k) expect(t.counts[i]).toBeNull();
            else if (t.counts[i] !== null) expect(t.counts[i]).toBe(v);
          });
        },
      ),
    );
  });

  it('aggregates records, counting missing values as *', () => {
    const t = aggregateOneWay([{ z: '019' }, { z: '019' }, { z: null }], 'z', 2);
    expect(t.categories).toEqual(['*', '019']);
    expect(t.counts).toEqual([null, null]);
    expect(() => aggregateOneWay([], 'z', 1)).toThrow(/at least 2/);
  });
});
