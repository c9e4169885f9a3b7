import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { type Command, InvalidArgumentError } from 'commander';
import type { JWK } from 'jose';
import { startCrmSandbox } from '../../sandbox/crm/index.ts';
import { loadClientsFile, startEhrSandbox } from '../../sandbox/ehr/index.ts';
import { reportError } from '../output.ts';

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65_535) throw new InvalidArgumentError('a port number 0–65535');
  return n;
}

function positive(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('a positive integer');
  return n;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Runs until SIGINT/SIGTERM, then closes the server. */
async function serveUntilStopped(close: () => Promise<void>): Promise<void> {
  await Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')]);
  await close();
}

export function registerSandbox(program: Command): void {
  const sandbox = program
    .command('sandbox')
    .description('run a local sandbox of an EHR (FHIR R4) or a CRM (Veeva on Salesforce REST) on 127.0.0.1');

  sandbox
    .command('ehr')
    .description(
      'FHIR R4 server with SMART Backend Services, Bulk $export and fault injection; prints its base URL',
    )
    .option('--port <n>', 'port on 127.0.0.1 (0 picks a free one)', port, 0)
    .option('--seed <path>', 'file or folder of FHIR JSON, Bundles or NDJSON (.gz too); repeatable', collect)
    .option('--clients <file>', 'registered backend-services clients (JSON); default: the demo client')
    .action(async (options: { port: number; seed?: string[]; clients?: string }) => {
      try {
        const clients = options.clients ? await loadClientsFile(options.clients) : undefined;
        const ehr = await startEhrSandbox({
          port: options.port,
          ...(options.seed ? { seed: options.seed } : {}),
          ...(clients ? { clients } : {}),
        });
        if (ehr.seeded) {
          process.stderr.write(`seeded ${ehr.seeded.resources} resources from ${ehr.seeded.files} file(s)\n`);
        }
        process.stdout.write(`${ehr.url}\n`);
        await serveUntilStopped(() => ehr.close());
      } catch (err) {
        process.exitCode = reportError(err, false);
      }
    });

  sandbox
    .command('crm')
    .description(
      'Veeva CRM over the Salesforce REST API (OAuth, upserts, collections, query, quota); prints its URL',
    )
    .option('--port <n>', 'port on 127.0.0.1 (0 picks a free one)', port, 0)
    .option('--db <file>', 'SQLite file for the records (default: in memory)')
    .option('--daily-limit <n>', 'API requests allowed per rolling 24 hours', positive)
    .option('--batch-jwks <file>', 'trusted batch signing keys (JWKS): signed batch envelopes are verified')
    .option('--require-signed-batches', 'with --batch-jwks: refuse upserts without a signed envelope')
    .action(
      async (options: {
        port: number;
        db?: string;
        dailyLimit?: number;
        batchJwks?: string;
        requireSignedBatches?: boolean;
      }) => {
        try {
          const batchJwks = options.batchJwks
            ? (JSON.parse(await readFile(options.batchJwks, 'utf8')) as { keys: JWK[] })
            : undefined;
          const crm = await startCrmSandbox({
            port: options.port,
            ...(batchJwks ? { batchJwks, requireSignedBatches: options.requireSignedBatches === true } : {}),
            ...(options.db ? { dbPath: options.db } : {}),
            ...(options.dailyLimit ? { dailyRequestLimit: options.dailyLimit } : {}),
          });
          process.stdout.write(`${crm.url}\n`);
          await serveUntilStopped(() => crm.close());
        } catch (err) {
          process.exitCode = reportError(err, false);
        }
      },
    );
}
