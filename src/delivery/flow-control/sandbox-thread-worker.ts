import { parentPort } from 'node:worker_threads';
import { startCrmSandbox } from '../../sandbox/crm/index.ts';

/**
 * Test-only worker entry: a CRM sandbox on its own thread (see sandbox-thread.ts). Posts `{url}` once
 * listening; closes on the message `'close'`.
 */
const port = parentPort;
if (!port) throw new Error('sandbox-thread-worker.ts must run as a worker thread');
const sandbox = await startCrmSandbox();
port.on('message', (message: unknown) => {
  if (message !== 'close') return;
  sandbox.close().then(
    () => port.close(),
    () => port.close(),
  );
});
port.postMessage({ url: sandbox.url });
