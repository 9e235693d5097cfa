/**
 * The console's DOM helpers, shared by its pages: every node is built with the DOM API (no HTML
 * strings, nothing inline), so what the broker returns is always text.
 */

export type Child = Node | string | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

export const when = (unix: number): string => new Date(unix * 1000).toLocaleString();
export const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

export function message(kind: 'ok' | 'error', text: string): HTMLElement {
  return h('p', { class: `msg ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
}

/** How long an action runs before the page says it is still working. */
const BUSY_AFTER_MS = 400;

/**
 * A button that runs `action`, disabled meanwhile (aria-busy); when it takes longer than a moment,
 * `busy` shows in `out` as a status, so a slow broker or a waiting wallet does not look like a dead
 * button. A failure is shown in `out`.
 */
export function actionButton(label: string, out: HTMLElement, action: () => Promise<void>, cls = '', busy = 'Working…'): HTMLButtonElement {
  const b = h('button', { type: 'button', ...(cls ? { class: cls } : {}) }, label);
  b.addEventListener('click', () => {
    if (b.disabled) return;
    b.disabled = true;
    b.setAttribute('aria-busy', 'true');
    out.replaceChildren();
    const pending = h('p', { class: 'muted busy', role: 'status' }, busy);
    const timer = setTimeout(() => out.append(pending), BUSY_AFTER_MS);
    action()
      .catch((e: unknown) => out.replaceChildren(message('error', errorText(e))))
      .finally(() => {
        clearTimeout(timer);
        pending.remove();
        b.disabled = false;
        b.removeAttribute('aria-busy');
      });
  });
  return b;
}

export function field(label: string, input: HTMLInputElement): HTMLElement {
  const id = `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  return h('div', {}, h('label', { for: id }, label), input);
}
