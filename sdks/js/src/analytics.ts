/** The `cairn` object: the six calls, identity kept across pages, and the page view helpers. */
import { aliasArguments, pageArguments, trackArguments, userArguments } from "./arguments";
import type { Resolved } from "./arguments";
import { browserContext, pageFields, VERSION } from "./context";
import { Delivery } from "./delivery";
import { trackClicks, trackHistory, trackScrollDepth } from "./helpers";
import {
  ANONYMOUS_ID,
  GROUP_ID,
  GROUP_TRAITS,
  Store,
  USER_ID,
  USER_TRAITS,
} from "./storage";
import type { Fields, LoadOptions, Message, MessageType } from "./types";
import { uuid } from "./uuid";

const CALLBACK_WAIT = 300; // as analytics.js: a callback never waits longer for delivery

/** analytics.js copies a page's name and category into its properties. */
function named(properties: Fields, name?: string, category?: string): Fields {
  return { ...properties, ...(name ? { name } : {}), ...(category ? { category } : {}) };
}

function timestamp(value: unknown): string {
  const date = value === undefined ? new Date() : new Date(value as string);
  return isNaN(date.getTime()) ? new Date().toISOString() : date.toISOString();
}

export class Cairn {
  readonly initialized = true;
  readonly VERSION = VERSION;
  private readonly store: Store;
  private readonly delivery: Delivery;
  private referrer = document.referrer;
  private readyCallbacks: (() => void)[] | undefined = [];
  private pageViewListeners: (() => void)[] = [];
  private debugging: boolean;

  constructor(
    readonly writeKey: string,
    readonly options: LoadOptions = {},
  ) {
    this.debugging = !!options.debug;
    this.store = new Store(options.cookie);
    const host = (options.host ?? "").replace(/\/+$/, "");
    this.delivery = new Delivery({
      url: `${host}/v1/batch`,
      writeKey,
      flushAt: options.flushAt ?? 20,
      flushInterval: options.flushInterval ?? 1000,
      maxQueue: options.maxQueue ?? 1000,
      log: (...args) => this.log(...args),
    });
  }

  /** Starts the helpers the options ask for; the automatic page view comes from `load`. */
  start(): void {
    if (this.options.history !== false) trackHistory(this);
    if (this.options.clicks) trackClicks(this);
    if (this.options.scrollDepth) trackScrollDepth(this);
    for (const callback of this.readyCallbacks ?? []) callback();
    this.readyCallbacks = undefined;
  }

  identify(...args: unknown[]): Message {
    const call = userArguments(args);
    const previous = this.userId();
    if (call.id && call.id !== previous) {
      // another user on this browser: a new anonymous id and no traits from the previous user
      if (previous) {
        this.store.set(ANONYMOUS_ID, null);
        this.store.set(USER_TRAITS, null);
      }
      this.store.set(USER_ID, call.id);
    }
    this.store.set(USER_TRAITS, { ...this.traits(), ...call.traits });
    const context = call.options.user_hash ? { user_hash: call.options.user_hash } : {};
    // only the traits of this call: cached ones could overwrite newer values set by a server
    return this.enqueue("identify", { traits: call.traits }, call, context);
  }

  track(...args: unknown[]): Message {
    const call = trackArguments(args);
    return this.enqueue("track", { event: call.event, properties: call.properties }, call);
  }

  page(...args: unknown[]): Message {
    const call = pageArguments(args);
    const { category, name } = call;
    const properties = named({ ...pageFields(this.referrer), ...call.properties }, name, category);
    for (const listener of this.pageViewListeners) listener();
    return this.enqueue("page", { category, name, properties }, call);
  }

  screen(...args: unknown[]): Message {
    const { category, name, properties, ...call } = pageArguments(args);
    return this.enqueue("screen", { category, name, properties: named(properties, name, category) }, call);
  }

  group(...args: unknown[]): Message {
    const call = userArguments(args);
    if (call.id && call.id !== this.groupId()) {
      this.store.set(GROUP_TRAITS, null);
      this.store.set(GROUP_ID, call.id);
    }
    this.store.set(GROUP_TRAITS, { ...this.groupTraits(), ...call.traits });
    return this.enqueue("group", { groupId: call.id, traits: call.traits }, call);
  }

  alias(...args: unknown[]): Message {
    const call = aliasArguments(args);
    const previousId = call.from ?? this.userId() ?? this.anonymousId();
    return this.enqueue("alias", { userId: call.to, previousId }, call);
  }

  /** Logout: forget the user, their traits and account; the next call gets a new anonymous id. */
  reset(): void {
    for (const key of [USER_ID, USER_TRAITS, ANONYMOUS_ID, GROUP_ID, GROUP_TRAITS]) {
      this.store.set(key, null);
    }
  }

  /** `callback` runs once the library has loaded (at once if it has). */
  ready(callback: () => void): void {
    if (this.readyCallbacks) this.readyCallbacks.push(callback);
    else callback();
  }

  /** Sends everything queued; resolves when Cairn has it, or when this attempt failed. */
  flush(): Promise<void> {
    return this.delivery.flush();
  }

  debug(on = true): void {
    this.debugging = on;
  }

  anonymousId(id?: string): string {
    if (id) this.store.set(ANONYMOUS_ID, id);
    let current = this.store.get(ANONYMOUS_ID) as string | null;
    if (!current) this.store.set(ANONYMOUS_ID, (current = uuid()));
    return current;
  }

  userId(): string | null {
    return this.store.get(USER_ID) as string | null;
  }

  traits(): Fields {
    return (this.store.get(USER_TRAITS) as Fields | null) ?? {};
  }

  groupId(): string | null {
    return this.store.get(GROUP_ID) as string | null;
  }

  groupTraits(): Fields {
    return (this.store.get(GROUP_TRAITS) as Fields | null) ?? {};
  }

  /** Pending messages (queued or in flight). */
  get pending(): number {
    return this.delivery.pending;
  }

  /** For the helpers: run `listener` on every page view (SPA or not). */
  onPage(listener: () => void): void {
    this.pageViewListeners.push(listener);
  }

  /** For the history helper: the page a route change leaves becomes the next referrer. */
  navigated(from: string): void {
    this.referrer = from;
  }

  private enqueue(type: MessageType, fields: Fields, call: Resolved, extra: Fields = {}): Message {
    const { options } = call;
    const context: Fields = { ...browserContext(this.referrer), ...extra, ...options.context };
    const groupId = this.groupId();
    if (groupId && type !== "group" && !("groupId" in context)) context.groupId = groupId;
    const message = {
      type,
      messageId: uuid(),
      timestamp: timestamp(options.timestamp),
      anonymousId: options.anonymousId ?? this.anonymousId(),
      userId: this.userId() ?? undefined,
      ...fields,
      context,
      ...(options.integrations ? { integrations: options.integrations } : {}),
    } as Message;
    this.log(type, message);
    this.delivery.push(message);
    if (call.callback) {
      const callback = call.callback;
      const wait = new Promise((resolve) => setTimeout(resolve, CALLBACK_WAIT));
      void Promise.race([this.flush(), wait]).then(() => callback(message));
    }
    return message;
  }

  private log(...args: unknown[]): void {
    if (this.debugging) console.log("[cairn]", ...args);
  }
}
