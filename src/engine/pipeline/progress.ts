/** Receives progress of a run; the CLI draws a bar from it, tests and `--json` ignore it. */
export interface ProgressSink {
  streamStarted(stream: string): void;
  /** After each committed page: records processed so far in the stream and the source's total if known. */
  pageCommitted(stream: string, processed: number, total: number | undefined): void;
  streamFinished(stream: string, processed: number): void;
}

export const NO_PROGRESS: ProgressSink = {
  streamStarted() {},
  pageCommitted() {},
  streamFinished() {},
};
