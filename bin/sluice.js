#!/usr/bin/env node
// Sluice runs its TypeScript sources directly on Node.js 24 (type stripping), so check the runtime
// before loading them: an older Node fails with a confusing syntax error otherwise.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 24 || (major === 24 && minor < 2)) {
  process.stderr.write(
    `sluice needs Node.js 24.2 or newer (this is ${process.version}).\n` +
      'Run it through npm (`npm run sluice -- ...` or `npx sluice ...`), which uses the Node 24 pinned in devDependencies, or install Node 24 LTS.\n',
  );
  process.exit(2);
}
await import('../src/cli/main.ts');
