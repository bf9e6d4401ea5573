// Radix (path-compressed) trie for prefix mappings, and for suffix mappings over reversed patterns.
import { preferred, type Entry } from './entry.js';

interface RadixNode {
  /** Edge label from the parent. In a suffix trie it is stored in key order (un-reversed) after build. */
  label: string;
  children: Map<number, RadixNode> | null;
  entry: Entry | null;
}

export class RadixTrie {
  readonly #root: RadixNode;

  private constructor(root: RadixNode) {
    this.#root = root;
  }

  static forPrefixes(entries: readonly Entry[]): RadixTrie {
    const root = newNode('');
    for (const entry of entries) insert(root, entry.pattern, entry);
    return new RadixTrie(root);
  }

  static forSuffixes(entries: readonly Entry[]): RadixTrie {
    const root = newNode('');
    for (const entry of entries) insert(root, reverse(entry.pattern), entry);
    // Walking the key backwards, an edge is compared with key.startsWith(label, end - label.length):
    // flip every label back to key order once, so lookups never reverse anything.
    reverseLabels(root);
    return new RadixTrie(root);
  }

  longestPrefixOf(key: string): Entry | null {
    let node = this.#root;
    let best: Entry | null = null;
    let position = 0;
    while (position < key.length) {
      const child = node.children?.get(key.charCodeAt(position));
      if (child === undefined || !key.startsWith(child.label, position)) break;
      position += child.label.length;
      node = child;
      if (node.entry !== null) best = node.entry;
    }
    return best;
  }

  longestSuffixOf(key: string): Entry | null {
    let node = this.#root;
    let best: Entry | null = null;
    let end = key.length;
    while (end > 0) {
      const child = node.children?.get(key.charCodeAt(end - 1));
      if (child === undefined) break;
      const start = end - child.label.length;
      if (start < 0 || !key.startsWith(child.label, start)) break;
      end = start;
      node = child;
      if (node.entry !== null) best = node.entry;
    }
    return best;
  }
}

function newNode(label: string): RadixNode {
  return { label, children: null, entry: null };
}

function insert(root: RadixNode, text: string, entry: Entry): void {
  let node = root;
  let position = 0;
  for (;;) {
    if (position === text.length) {
      node.entry = preferred(node.entry, entry);
      return;
    }
    const firstCode = text.charCodeAt(position);
    node.children ??= new Map();
    const child = node.children.get(firstCode);
    if (child === undefined) {
      const leaf = newNode(text.slice(position));
      leaf.entry = entry;
      node.children.set(firstCode, leaf);
      return;
    }
    const common = commonPrefixLength(child.label, text, position);
    if (common < child.label.length) {
      // Split the edge: node -> middle(common part) -> child(rest).
      const middle = newNode(child.label.slice(0, common));
      child.label = child.label.slice(common);
      middle.children = new Map([[child.label.charCodeAt(0), child]]);
      node.children.set(firstCode, middle);
      node = middle;
    } else {
      node = child;
    }
    position += common;
  }
}

function commonPrefixLength(label: string, text: string, offset: number): number {
  const limit = Math.min(label.length, text.length - offset);
  let length = 0;
  while (length < limit && label.charCodeAt(length) === text.charCodeAt(offset + length)) length++;
  return length;
}

function reverseLabels(node: RadixNode): void {
  node.label = reverse(node.label);
  if (node.children === null) return;
  for (const child of node.children.values()) reverseLabels(child);
}

function reverse(text: string): string {
  let reversed = '';
  for (let index = text.length - 1; index >= 0; index--) reversed += text[index];
  return reversed;
}
