import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DEFAULT_MATRIX_DIR } from '../../core/matrix/load.ts';
import { DEFAULT_MATRIX_DOC, registerMapping } from './mapping.ts';

async function run(args: string[]): Promise<number> {
  const program = new Command().exitOverride();
  registerMapping(program);
  process.exitCode = 0;
  await program.parseAsync(['node', 'sluice', ...args]);
  const code = Number(process.exitCode ?? 0);
  process.exitCode = 0;
  return code;
}

describe('sluice mapping docs', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    vi.restoreAllMocks();
  });

  function workspace(): { dir: string; out: string } {
    const root = mkdtempSync(join(tmpdir(), 'sluice-mapping-'));
    dirs.push(root);
    const dir = join(root, 'mappings');
    cpSync(DEFAULT_MATRIX_DIR, dir, { recursive: true });
    return { dir, out: join(root, 'mapping-matrix.md') };
  }

  it('the committed docs/mapping-matrix.md is current', async () => {
    vi.spyOn(process.stdout, 'write').mockReturnValue(true);
    expect(await run(['mapping', 'docs', '--check'])).toBe(0);
    expect(readFileSync(DEFAULT_MATRIX_DOC, 'utf8')).toContain('### Practitioner → HCP');
  });

  it('writes the rendering, then --check fails once a matrix file changes', async () => {
    vi.spyOn(process.stdout, 'write').mockReturnValue(true);
    const stderr = vi.spyOn(process.stderr, 'write').mockReturnValue(true);
    const { dir, out } = workspace();
    expect(await run(['mapping', 'docs', '--check', '--dir', dir, '--out', out])).toBe(1);
    expect(await run(['mapping', 'docs', '--dir', dir, '--out', out])).toBe(0);
    expect(await run(['mapping', 'docs', '--check', '--dir', dir, '--out', out])).toBe(0);
    const file = join(dir, 'concept-maps.yaml');
    writeFileSync(
      file,
      readFileSync(file, 'utf8').replace('M: male, F: female', 'M: male, F: female, X: other'),
    );
    expect(await run(['mapping', 'docs', '--check', '--dir', dir, '--out', out])).toBe(1);
    expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toContain('MATRIX_DOCS_STALE');
  });

  it('an invalid matrix exits 2 and names the key', async () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockReturnValue(true);
    const { dir, out } = workspace();
    const file = join(dir, 'fhir-r4-to-canonical.yaml');
    writeFileSync(
      file,
      readFileSync(file, 'utf8').replace(
        'owner: data-governance\n        compliance: The NPI keys HCP',
        'compliance: The NPI keys HCP',
      ),
    );
    expect(await run(['mapping', 'docs', '--dir', dir, '--out', out])).toBe(2);
    expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toContain('mappings[0].fields[0].owner');
  });
});
