import { type Logger, pino } from 'pino';

/**
 * The process logger: JSON lines on stderr (stdout is for results). Sluice logs counts, codes, flow
 * and run ids only — never record content; the redact list is a second line of defence for fields a
 * careless call might pass.
 */
export function createLogger(level: string = process.env.SLUICE_LOG_LEVEL ?? 'warn'): Logger {
  return pino(
    {
      level,
      base: { app: 'sluice' },
      redact: {
        paths: ['resource', 'record', 'payload', 'fields', '*.resource', '*.payload', '*.fields'],
        censor: '[redacted]',
      },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}
