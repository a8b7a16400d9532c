/** The shapes the SDK works with: messages on the wire, load options, per-call options. */

export type Fields = Record<string, unknown>;

export type MessageType = "identify" | "track" | "page" | "screen" | "group" | "alias";

/** One Segment-spec message as it is queued and sent (PROTOCOL.md, "The six calls"). */
export interface Message extends Fields {
  type: MessageType;
  messageId: string;
  timestamp: string;
  anonymousId: string;
  userId?: string;
  context: Fields;
}

export interface CookieOptions {
  /** Defaults to the widest domain the browser accepts (`example.com` on `www.example.com`). */
  domain?: string;
  /** Seconds; one year by default, as analytics.js. */
  maxAge?: number;
  sameSite?: "Lax" | "Strict" | "None";
  /** Defaults to true on https pages. */
  secure?: boolean;
}

/** `cairn.load(writeKey, options)`: everything is optional except where Cairn lives. */
export interface LoadOptions {
  /** Cairn's base URL; defaults to the origin cairn.js was loaded from. */
  host?: string;
  /** Send when this many events are waiting (20). */
  flushAt?: number;
  /** ...or this many milliseconds after the first one was queued (1000). */
  flushInterval?: number;
  /** Most events kept while Cairn cannot be reached; the oldest go first (1000). */
  maxQueue?: number;
  /** The automatic page view when the library loads (true). */
  page?: boolean;
  /** Page views on single-page-app route changes: pushState, replaceState, popstate (true). */
  history?: boolean;
  /** `data-cairn-track` click tracking (false). */
  clicks?: boolean;
  /** `Page Scrolled` at 25/50/75/100 % (false). */
  scrollDepth?: boolean;
  cookie?: CookieOptions;
  /** Log every message and every delivery to the console. */
  debug?: boolean;
}

/** The last object argument of every call, as in analytics.js. */
export interface CallOptions {
  context?: Fields;
  integrations?: Fields;
  timestamp?: Date | string | number;
  anonymousId?: string;
  /** Identity verification: hex HMAC-SHA256 of the userId, computed by the site's server. */
  user_hash?: string;
}

export type Callback = (message: Message) => void;
