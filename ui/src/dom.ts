/** Small DOM helpers. */

export function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  children: (Node | string)[] = [],
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

export function initials(name: string): string {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  return (parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] ?? "?").slice(0, 2)).toUpperCase();
}

/**
 * Names a control for screen readers and for the pointer: `data-tip` is drawn by the
 * style sheet next to the control on hover. (The native `title` tooltip is a separate
 * window that can stay behind where the pointer last was.)
 */
export function tip(node: Element, text: string): void {
  node.setAttribute("aria-label", text);
  node.setAttribute("data-tip", text);
}
