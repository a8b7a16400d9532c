/** What only the browser sees, as opt-in helpers: route changes, declarative clicks, scroll depth. */
import type { Cairn } from "./analytics";
import type { Fields } from "./types";

const ROUTE_SETTLE = 50; // ms: a redirect right after a route change makes one page view
const PROP = "data-cairn-prop-";
const DEPTHS = [25, 50, 75, 100];

function withoutHash(url: string): string {
  return url.split("#")[0];
}

/** A page view whenever a single-page app changes the URL (path or query; not the hash). */
export function trackHistory(cairn: Cairn): void {
  let last = withoutHash(location.href);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const changed = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const now = withoutHash(location.href);
      if (now === last) return;
      cairn.navigated(last);
      last = now;
      cairn.page();
    }, ROUTE_SETTLE);
  };
  for (const method of ["pushState", "replaceState"] as const) {
    const original = history[method];
    history[method] = function (this: History, ...args: Parameters<History["pushState"]>) {
      const result = original.apply(this, args);
      changed();
      return result;
    };
  }
  addEventListener("popstate", changed);
}

/** `data-cairn-prop-plan-name="Pro"` → `{plan_name: "Pro"}`; numbers and booleans are typed. */
export function clickProperties(element: Element): Fields {
  const properties: Fields = {};
  for (const { name, value } of Array.from(element.attributes)) {
    if (!name.startsWith(PROP)) continue;
    const key = name.slice(PROP.length).replace(/[^a-z0-9]+/gi, "_").toLowerCase();
    properties[key] = typed(value);
  }
  return properties;
}

function typed(value: string): unknown {
  if (/^-?(0|[1-9]\d*)(\.\d+)?$/.test(value)) return Number(value);
  if (value === "true" || value === "false") return value === "true";
  return value;
}

/** A click inside an element with `data-cairn-track="Event Name"` tracks that event. */
export function trackClicks(cairn: Cairn): void {
  const onClick = (event: Event): void => {
    const target = event.target as Element | null;
    const element = target?.closest?.("[data-cairn-track]");
    const name = element?.getAttribute("data-cairn-track")?.trim();
    if (element && name) cairn.track(name, clickProperties(element));
  };
  // the capture phase: a handler that stops propagation does not hide the click
  document.addEventListener("click", onClick, true);
}

/** How far down the page the visitor has seen, in percent. */
export function scrollDepth(): number {
  const root = document.documentElement;
  const height = Math.max(root.scrollHeight, document.body?.scrollHeight ?? 0);
  return height ? Math.min(100, ((scrollY + innerHeight + 1) / height) * 100) : 0;
}

/** `Page Scrolled` with `depth` 25, 50, 75 and 100, each once per page view. */
export function trackScrollDepth(cairn: Cairn): void {
  let reached = new Set<number>();
  let pending = false;
  cairn.onPage(() => (reached = new Set()));
  const check = (): void => {
    pending = false;
    const depth = scrollDepth();
    for (const mark of DEPTHS) {
      if (mark > depth || reached.has(mark)) continue;
      reached.add(mark);
      cairn.track("Page Scrolled", { depth: mark });
    }
  };
  addEventListener(
    "scroll",
    () => {
      if (!pending) setTimeout(check, 100);
      pending = true;
    },
    { passive: true },
  );
}
