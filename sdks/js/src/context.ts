/** What the browser knows about where and who the visitor is: `context` on every call. */
import type { Fields } from "./types";

declare const __VERSION__: string;
export const VERSION: string = typeof __VERSION__ === "string" ? __VERSION__ : "0.0.0-dev";
export const LIBRARY = { name: "cairn.js", version: VERSION };

const CAMPAIGN_NAMES: Record<string, string> = { campaign: "name" };

/** The page as analytics.js describes it: a canonical link wins over the address bar; no hash. */
export function pageFields(referrer: string): Fields {
  const canonical = document.querySelector<HTMLLinkElement>("link[rel='canonical']")?.href;
  const { pathname, search, href } = location;
  return {
    path: canonical ? new URL(canonical).pathname : pathname,
    referrer,
    search,
    title: document.title,
    url: canonical ? (canonical.includes("?") ? canonical : canonical + search) : href.split("#")[0],
  };
}

/** `utm_source=x&utm_campaign=y` becomes `{source: "x", name: "y"}`. */
export function campaign(search: string): Fields | undefined {
  const found: Fields = {};
  new URLSearchParams(search).forEach((value, key) => {
    if (!key.startsWith("utm_") || key.length < 5) return;
    const name = key.slice(4);
    found[CAMPAIGN_NAMES[name] ?? name] = value;
  });
  return Object.keys(found).length ? found : undefined;
}

interface UserAgentData {
  brands?: unknown;
  mobile?: boolean;
  platform?: string;
}

function timezone(): string | undefined {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch {
    return undefined;
  }
}

/** The context fields every message carries; the caller adds `groupId` and its own. */
export function browserContext(referrer: string): Fields {
  const agentData = (navigator as Navigator & { userAgentData?: UserAgentData }).userAgentData;
  const context: Fields = {
    library: LIBRARY,
    page: pageFields(referrer),
    userAgent: navigator.userAgent,
    locale: navigator.language,
    timezone: timezone(),
    screen: { width: screen.width, height: screen.height, density: window.devicePixelRatio },
    campaign: campaign(location.search),
  };
  if (agentData) {
    const { brands, mobile, platform } = agentData;
    context.userAgentData = { brands, mobile, platform };
  }
  return context;
}
