/**
 * First-party storage under analytics.js's names and encodings, so a site that switches from
 * analytics.js keeps its visitors (and could switch back): ids in a cookie (raw value) and in
 * localStorage (JSON), traits in localStorage only, a memory copy when both are unavailable.
 */
import type { CookieOptions } from "./types";

export const ANONYMOUS_ID = "ajs_anonymous_id";
export const USER_ID = "ajs_user_id";
export const USER_TRAITS = "ajs_user_traits";
export const GROUP_ID = "ajs_group_id";
export const GROUP_TRAITS = "ajs_group_properties";

const IN_COOKIES = [ANONYMOUS_ID, USER_ID, GROUP_ID];
const YEAR = 365 * 24 * 3600;

/** analytics.js stores JSON; its cookies are raw, or JSON-quoted by the classic library. */
function parse(text: string | null): unknown {
  if (text === null || text === "") return null;
  try {
    const value = JSON.parse(text);
    return typeof value === "number" ? String(value) : value;
  } catch {
    return text;
  }
}

export function readCookie(name: string): string | null {
  for (const pair of document.cookie.split(/; */)) {
    const at = pair.indexOf("=");
    if (pair.slice(0, at) !== name) continue;
    try {
      return decodeURIComponent(pair.slice(at + 1));
    } catch {
      return pair.slice(at + 1);
    }
  }
  return null;
}

function writeCookie(name: string, value: string | null, options: CookieOptions): void {
  let cookie = `${name}=${value === null ? "" : encodeURIComponent(value)}; path=/`;
  const seconds = value === null ? -YEAR : (options.maxAge ?? YEAR);
  cookie += `; expires=${new Date(Date.now() + seconds * 1000).toUTCString()}`;
  cookie += `; SameSite=${options.sameSite ?? "Lax"}`;
  if (options.domain) cookie += `; domain=${options.domain}`;
  if (options.secure ?? location.protocol === "https:") cookie += "; Secure";
  document.cookie = cookie;
}

/** The widest domain the browser lets this page set cookies on, found the way analytics.js does. */
export function cookieDomain(hostname: string): string | undefined {
  const parts = hostname.split(".");
  if (parts.length < 2 || /^[\d.]+$|:/.test(hostname)) return undefined; // localhost, an IP
  for (let i = parts.length - 2; i >= 0; i--) {
    const domain = parts.slice(i).join(".");
    writeCookie("__tld__", "1", { domain, maxAge: 10 });
    if (readCookie("__tld__")) {
      writeCookie("__tld__", null, { domain });
      return domain;
    }
  }
  return undefined;
}

export class Store {
  private memory: Record<string, unknown> = {};
  private cookie: CookieOptions;

  constructor(cookie: CookieOptions = {}) {
    this.cookie = { ...cookie };
    if (!("domain" in cookie)) this.cookie.domain = cookieDomain(location.hostname);
  }

  /** The anonymous id is read from the cookie first (servers and subdomains share it), the rest from
   * localStorage first, as analytics.js does; whatever is found is copied to the other places. */
  get(key: string): unknown {
    const inCookie = IN_COOKIES.includes(key) ? parse(readCookie(key)) : null;
    const inStorage = parse(this.local(key));
    const value =
      (key === ANONYMOUS_ID ? (inCookie ?? inStorage) : (inStorage ?? inCookie)) ??
      this.memory[key] ??
      null;
    if (value !== null && (inStorage === null || (inCookie === null && IN_COOKIES.includes(key)))) {
      this.set(key, value);
    }
    return value;
  }

  set(key: string, value: unknown): void {
    this.memory[key] = value;
    try {
      if (value === null) localStorage.removeItem(key);
      else localStorage.setItem(key, JSON.stringify(value));
    } catch {
      // private mode, storage full or disabled: the cookie and the memory copy remain
    }
    if (!IN_COOKIES.includes(key)) return;
    writeCookie(key, value === null ? null : String(value), this.cookie);
    // a host-only cookie of the same name would shadow the domain one on the next read
    if (value === null && this.cookie.domain) writeCookie(key, null, {});
  }

  private local(key: string): string | null {
    try {
      return localStorage.getItem(key);
    } catch {
      return null;
    }
  }
}
