import type { ErrorCode } from '../../errors/index.ts';
import type { Issue } from '../../mapping/outcome.ts';

/** Issue codes of the compiled validator: the `VAL_` codes of the error catalog (record-level). */
export type ValidationCode = Extract<ErrorCode, `VAL_${string}`>;

export interface FastValidateOptions {
  /**
   * Epic logical ids can exceed FHIR's 64 characters (see shared/data/epic/NOTES.md): a per-source
   * allowance that turns an over-long but otherwise well-formed `id` into a warning.
   */
  readonly allowLongIds?: boolean;
  /** Stop collecting after this many issues (default 100): a garbage record should not cost more. */
  readonly maxIssues?: number;
}

/** A local reference (`#id`) seen while validating, and where. */
interface LocalRef {
  readonly target: string;
  readonly path: string;
  /** From Reference.reference (ref-1 applies), not from a canonical or uri value (dom-3 only). */
  readonly reference: boolean;
}

/**
 * References and contained ids of one resource that is not itself contained (the root, a Bundle entry,
 * a Parameters resource): ref-1 and dom-3 are decided once its whole tree has been seen.
 */
export interface ResourceFrame {
  readonly resource: object;
  localRefs: LocalRef[] | undefined;
  /** Set while a contained resource of this frame is being validated: its index in `contained`. */
  containedIndex: number;
  /** Indexes of contained resources that refer to their container (`#`). */
  selfReferring: number[] | undefined;
}

/**
 * Mutable state of one `validateFast` call. Validators receive it instead of closing over it. The path
 * of the node being validated is kept as a stack of segments and only joined into a string when an
 * issue is reported: most nodes are valid, and building a path for each of them was a fifth of the cost.
 */
export class ValidationContext {
  readonly issues: Issue[] = [];
  readonly allowLongIds: boolean;
  readonly maxIssues: number;
  /** True once `maxIssues` is reached: validators return early. */
  full = false;
  frame: ResourceFrame | undefined;
  /** The resource being validated (contained resources included), for `%resource` in invariants. */
  resource: object | undefined;
  private readonly segments: string[] = [];

  constructor(options: FastValidateOptions | undefined) {
    this.allowLongIds = options?.allowLongIds ?? false;
    this.maxIssues = Math.max(1, options?.maxIssues ?? 100);
  }

  enter(segment: string): void {
    this.segments.push(segment);
  }

  leave(): void {
    this.segments.pop();
  }

  /** The current path, FHIRPath-like: `Patient.name[0].given[1]`. */
  path(suffix = ''): string {
    return this.segments.join('') + suffix;
  }

  /** Reports an error at the current path (plus `suffix`, e.g. `.status` for a missing child). */
  error(code: ValidationCode, message: string, suffix = ''): void {
    this.push({ severity: 'error', code, path: this.path(suffix), message });
  }

  warning(code: ValidationCode, message: string, suffix = ''): void {
    this.push({ severity: 'warning', code, path: this.path(suffix), message });
  }

  /** Reports an error at a path recorded earlier (ref-1 is decided after the whole resource is seen). */
  errorAt(code: ValidationCode, path: string, message: string): void {
    this.push({ severity: 'error', code, path, message });
  }

  private push(issue: Issue): void {
    if (this.full) return;
    this.issues.push(issue);
    if (this.issues.length >= this.maxIssues) this.full = true;
  }

  /** Records a `#id` reference at the current path (Reference.reference, or a canonical/uri value). */
  localRef(target: string, suffix: string, reference: boolean): void {
    const frame = this.frame;
    if (!frame) return;
    if (target === '#') {
      if (frame.containedIndex >= 0) {
        frame.selfReferring ??= [];
        frame.selfReferring.push(frame.containedIndex);
      }
      return;
    }
    frame.localRefs ??= [];
    frame.localRefs.push({ target: target.slice(1), path: this.path(suffix), reference });
  }
}

/**
 * An object key, safe to put into a path or message: keys come from the record, and a malformed one
 * could carry content, so anything that is not shaped like a FHIR element name is masked.
 */
export function safeKey(key: string): string {
  return /^_?[A-Za-z][A-Za-z0-9]{0,63}$/.test(key) ? key : '<unrecognised key>';
}
