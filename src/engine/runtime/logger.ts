import { type Logger, pino } from 'pino';

/**
 * The process logger: JSON lines on stderr (stdout is for results). Sluice logs counts, codes, flow
 * and run ids only — never record content; the redact list is a second line of defence for fields a
 * careless call might pass. `SLUICE_LOG_FILE` also appends every line at debug level to a file (the
 * test suite scans that file for identifiers from the test data).
 */
export function createLogger(level: string = process.env.SLUICE_LOG_LEVEL ?? 'warn'): Logger {
  const options = {
    level,
    base: { app: 'sluice' },
    redact: {
      paths: ['resource', 'record', 'payload', 'fields', '*.resource', '*.payload', '*.fields'],
      censor: '[redacted]',
    },
  };
  const file = process.env.SLUICE_LOG_FILE;
  if (!file) return pino(options, pino.destination({ fd: 2, sync: true }));
  return pino(
    { ...options, level: 'debug' },
    pino.multistream([
      { level: level as pino.Level, stream: pino.destination({ fd: 2, sync: true }) },
      { level: 'debug', stream: pino.destination({ dest: file, append: true, sync: true, mkdir: true }) },
    ]),
  );
}
