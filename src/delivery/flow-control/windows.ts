import type { SchedulingWindow } from './policy.ts';

/**
 * Scheduling windows ("backfill only 22:00–06:00 Europe/Berlin"): whether a class may run at an
 * instant, and how long until it may. Local time comes from Intl, so DST and zone rules are the
 * platform's; a window's start is inclusive, its end exclusive.
 */

const DAY_MS = 86_400_000;
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** Milliseconds since local midnight in `timeZone` at `epochMs`. */
export function localTimeOfDayMs(epochMs: number, timeZone: string): number {
  let hour = 0;
  let minute = 0;
  let second = 0;
  for (const part of formatter(timeZone).formatToParts(epochMs)) {
    if (part.type === 'hour') hour = Number(part.value) % 24;
    else if (part.type === 'minute') minute = Number(part.value);
    else if (part.type === 'second') second = Number(part.value);
  }
  const millis = ((epochMs % 1000) + 1000) % 1000;
  return ((hour * 60 + minute) * 60 + second) * 1000 + millis;
}

function parseHhMm(text: string): number {
  const [h, m] = text.split(':');
  return (Number(h) * 60 + Number(m)) * 60_000;
}

export function isInWindow(window: SchedulingWindow, epochMs: number): boolean {
  const t = localTimeOfDayMs(epochMs, window.timeZone);
  const start = parseHhMm(window.start);
  const end = parseHhMm(window.end);
  return start < end ? t >= start && t < end : t >= start || t < end;
}

/** True when no windows are configured or `epochMs` falls inside one of them. */
export function isOpen(windows: readonly SchedulingWindow[] | undefined, epochMs: number): boolean {
  return !windows || windows.length === 0 || windows.some((w) => isInWindow(w, epochMs));
}

/**
 * Milliseconds until the earliest window opens (0 if one is open). Computed on the local clock face,
 * so across a DST change it may be off by the shift; callers re-check when they wake.
 */
export function msUntilOpen(windows: readonly SchedulingWindow[] | undefined, epochMs: number): number {
  if (isOpen(windows, epochMs)) return 0;
  let best = DAY_MS;
  for (const w of windows ?? []) {
    const t = localTimeOfDayMs(epochMs, w.timeZone);
    const until = (((parseHhMm(w.start) - t) % DAY_MS) + DAY_MS) % DAY_MS;
    best = Math.min(best, until === 0 ? DAY_MS : until);
  }
  return best;
}
