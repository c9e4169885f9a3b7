import { once } from 'node:events';
import type { Command } from 'commander';
import { runDemo } from '../../demo/run-demo.ts';
import { EXIT, printJson, printLine, reportError } from '../output.ts';
import { terminalProgress } from '../progress-bar.ts';
import { formatSummary } from '../summary-text.ts';

interface DemoOptions {
  json?: boolean;
  serve: boolean;
  seed?: string[];
  stateDir?: string;
  progress: boolean;
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('start both sandboxes in-process, run the example flow once and print a summary')
    .option('--json', 'print the summary as one JSON line (the last line of stdout); implies --no-serve')
    .option('--no-serve', 'exit after the run instead of keeping the sandboxes up for exploring')
    .option(
      '--seed <path>',
      'seed the EHR from this file or folder instead of the bundled sample; repeatable',
      (v: string, p: string[] = []) => [...p, v],
    )
    .option('--state-dir <dir>', 'keep the flow state here instead of a temporary directory')
    .option('--no-progress', 'no progress bar on the terminal')
    .action(async (options: DemoOptions) => {
      process.exitCode = await demoCommand(options);
    });
}

async function demoCommand(options: DemoOptions): Promise<number> {
  const json = options.json === true;
  let demo: Awaited<ReturnType<typeof runDemo>>;
  try {
    demo = await runDemo({
      ...(options.seed ? { seed: options.seed } : {}),
      ...(options.stateDir ? { stateDir: options.stateDir } : {}),
      ...(options.progress ? { progress: terminalProgress() } : {}),
    });
  } catch (err) {
    return reportError(err, json);
  }
  try {
    const { summary, crmRecords, crmRecordsByObject } = demo;
    if (json) {
      printJson({ ...summary, crmRecords, crmRecordsByObject, ehrUrl: demo.ehr.url, crmUrl: demo.crm.url });
    } else {
      printLine(formatSummary(summary));
      printLine(
        `  the CRM sandbox holds ${crmRecords} records: ${Object.entries(crmRecordsByObject)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}`,
      );
    }
    if (summary.status !== 'succeeded') return EXIT.failed;
    if (!json && options.serve) {
      printLine('');
      printLine(`EHR sandbox: ${demo.ehr.url}   CRM sandbox: ${demo.crm.url}`);
      printLine(`  CRM records: ${demo.crm.url}/__sandbox/records?object=Patient_Profile__c`);
      printLine('  Ctrl-C to stop.');
      await Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')]);
    }
    return EXIT.ok;
  } finally {
    await demo.close();
  }
}
