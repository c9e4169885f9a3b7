import { loadFlow, type ResolvedFlow } from '../engine/config/load-flow.ts';
import { reportError } from './output.ts';

/**
 * Loads a flow file for a command; when it does not load, the error is reported (as JSON too with
 * `json`) and the exit code is returned instead.
 */
export function loadFlowOrReport(
  file: string,
  json: boolean,
  options: { offline?: boolean } = {},
): ResolvedFlow | number {
  try {
    return loadFlow(file, options.offline ? { offline: true } : {});
  } catch (err) {
    return reportError(err, json);
  }
}
