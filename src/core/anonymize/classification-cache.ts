import {
  type Classification,
  classifyElement,
  classifyRoot,
  classifyUnknown,
  type ElementPosition,
} from './classify.ts';
import { type ElementInfo, isResourceTypeName } from './schema.ts';

/**
 * Classifications already made, reused: an element's classification depends only on its parent's and
 * its position in the model, and resources of one type repeat the same positions thousands of times.
 * Each classification made under a parent is kept with that parent, by the element (`childElement`
 * gives one object per type and key, so the element names the parent's type and the key): every kept
 * object stands for one path from the root, and a parent found in the cache finds its children there
 * too, with no key to build. Bounded: past `limit` classifications kept, new ones are made and not
 * kept (input with ever-new paths cannot grow it).
 */
export class ClassificationCache {
  readonly #limit: number;
  readonly #roots = new Map<string, Classification>();
  readonly #children = new WeakMap<Classification, WeakMap<ElementInfo, Classification>>();
  readonly #unknown = new WeakMap<Classification, Classification>();
  #kept = 0;

  constructor(limit = 100_000) {
    this.#limit = limit;
  }

  /** How many classifications are kept. */
  get size(): number {
    return this.#kept;
  }

  root(resourceType: string): Classification {
    const hit = this.#roots.get(resourceType);
    if (hit !== undefined) return hit;
    const made = classifyRoot(resourceType);
    // Only the model's resource types: a made-up one is classified, not kept.
    if (isResourceTypeName(resourceType) && this.#room()) this.#roots.set(resourceType, made);
    return made;
  }

  unknown(parent: Classification): Classification {
    const hit = this.#unknown.get(parent);
    if (hit !== undefined) return hit;
    const made = classifyUnknown(parent);
    if (this.#room()) this.#unknown.set(parent, made);
    return made;
  }

  /** `position.element` as `childElement` gave it (one object per type and key). */
  element(parent: Classification, position: ElementPosition): Classification {
    const { element } = position;
    let byElement = this.#children.get(parent);
    const hit = byElement?.get(element);
    if (hit !== undefined) return hit;
    const made = classifyElement(parent, position);
    if (this.#room()) {
      if (byElement === undefined) {
        byElement = new WeakMap();
        this.#children.set(parent, byElement);
      }
      byElement.set(element, made);
    }
    return made;
  }

  #room(): boolean {
    if (this.#kept >= this.#limit) return false;
    this.#kept++;
    return true;
  }
}
