/**
 * Delivery to Cairn's `/v1/batch`: batches by count and time, one request at a time, retried with
 * backoff (or the server's Retry-After) until Cairn answers; every queued message is mirrored in
 * localStorage, so a closed tab, a crash or a long outage loses nothing: the next page of the site
 * sends what is left. Messages keep their messageId and timestamp on every retry, so a message
 * that was sent twice (an answer lost on the way back) is stored once: the server dedupes.
 */
import type { Message } from "./types";
import { uuid } from "./uuid";

const PREFIX = "cairn_queue:";
const MAX_BYTES = 450_000; // Cairn refuses requests over 500 KB
const MAX_MESSAGES = 500;
const KEEPALIVE_BYTES = 60_000; // the browser's budget for requests that outlive the page: 64 KB
const MAX_BACKOFF = 60_000;
const STALE = 10 * 60_000; // a live tab rewrites its queue at least every MAX_BACKOFF
const BEACON_TRUST = 12 * 3600_000; // resend after this and the server's 24 h dedupe may miss it

/** A tab's queue as kept in localStorage. */
interface Saved {
  w: string; // write key and URL: a queue only goes where it was meant to go
  u: string;
  t: number; // last written
  c?: 1; // the page is gone: any page may take the queue over
  b?: number; // ...after the browser accepted all of it as beacons, at this time
  q: Message[];
}

export interface DeliveryOptions {
  url: string;
  writeKey: string;
  flushAt: number;
  flushInterval: number;
  maxQueue: number;
  log: (...args: unknown[]) => void;
}

/** Statuses worth another try; any other 4xx will be refused again, so the batch is dropped. */
function retryable(status: number): boolean {
  return status === 0 || status === 408 || status === 429 || (status >= 500 && status !== 501);
}

function retryAfter(header: string | null): number | undefined {
  if (!header) return undefined;
  const wait = /^\d+$/.test(header) ? Number(header) * 1000 : Date.parse(header) - Date.now();
  return wait >= 0 ? wait : undefined;
}

/** UTF-8 bytes, as Cairn and the browser's keepalive budget count them. */
function byteLength(text: string): number {
  return new TextEncoder().encode(text).length;
}

/** Consecutive slices of `messages`, each under `maxBytes` of JSON (a lone large one goes alone). */
export function split(messages: Message[], maxBytes: number): Message[][] {
  const batches: Message[][] = [];
  let current: Message[] = [];
  let bytes = 0;
  for (const message of messages) {
    const size = byteLength(JSON.stringify(message)) + 1;
    if (current.length && (bytes + size > maxBytes || current.length >= MAX_MESSAGES)) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(message);
    bytes += size;
  }
  if (current.length) batches.push(current);
  return batches;
}

export class Delivery {
  private queue: Message[] = [];
  private sending = new Set<string>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private failures = 0;
  private retryAt = 0;
  private waiting: (() => void)[] = [];
  private gone = false; // after pagehide: the beacons have it, until the page is shown again
  private unreachable = false; // the last attempt got no answer at all
  private readonly key = PREFIX + uuid();

  constructor(private readonly o: DeliveryOptions) {
    addEventListener("online", () => {
      if (this.unreachable) this.retryAt = 0; // the backoff was for the network, which is back
      this.send(true);
    });
    addEventListener("pagehide", () => this.unload());
    addEventListener("pageshow", (event) => {
      this.gone = false;
      if ((event as PageTransitionEvent).persisted) this.save();
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") this.send(true);
    });
    this.adopt();
  }

  push(message: Message): void {
    this.queue.push(message);
    const excess = this.queue.length - this.o.maxQueue;
    if (excess > 0) this.o.log("queue full: dropped the oldest", this.queue.splice(0, excess));
    this.save();
    if (this.unsent().length >= this.o.flushAt) this.send();
    else this.schedule(this.o.flushInterval);
  }

  /** Sends what is queued now; resolves when the queue is empty or the attempt failed. */
  flush(): Promise<void> {
    const done = new Promise<void>((resolve) => this.waiting.push(resolve));
    this.send(true);
    if (!this.queue.length) this.settled();
    return done;
  }

  get pending(): number {
    return this.queue.length;
  }

  private unsent(): Message[] {
    return this.queue.filter((message) => !this.sending.has(message.messageId));
  }

  private schedule(delay: number): void {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      if (Date.now() >= this.retryAt - 50) this.retryAt = 0; // timers may run a little early
      this.send();
    }, delay);
  }

  /** `now` skips the wait for a fuller batch and sends beside a request in flight, never past a
   * Retry-After: it is what `flush()`, `online` and a hidden page do. */
  private send(now = false): void {
    if (this.gone || navigator.onLine === false || Date.now() < this.retryAt) return this.settled();
    if (this.sending.size && !now) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    const batches = split(this.unsent(), MAX_BYTES);
    for (const batch of now ? batches : batches.slice(0, 1)) void this.post(batch);
  }

  private body(batch: Message[]): string {
    return JSON.stringify({ batch, sentAt: new Date().toISOString(), writeKey: this.o.writeKey });
  }

  private async post(batch: Message[]): Promise<void> {
    for (const message of batch) this.sending.add(message.messageId);
    const body = this.body(batch);
    let status = 0;
    let wait: number | undefined;
    try {
      // text/plain and no custom header: a "simple" request, so no CORS preflight; keepalive lets
      // the request finish if the page goes away meanwhile.
      const answer = await fetch(this.o.url, {
        method: "POST",
        body,
        keepalive: byteLength(body) < KEEPALIVE_BYTES,
        credentials: "omit",
      });
      status = answer.status;
      wait = retryAfter(answer.headers.get("Retry-After"));
    } catch (error) {
      this.o.log("network error", error);
    }
    for (const message of batch) this.sending.delete(message.messageId);
    this.answered(batch, status, wait);
  }

  private answered(batch: Message[], status: number, wait: number | undefined): void {
    this.o.log("sent", batch.length, "messages:", status || "no answer");
    this.unreachable = status === 0;
    if (retryable(status)) {
      const backoff = Math.min(MAX_BACKOFF, 1000 * 2 ** this.failures++) * (0.5 + Math.random());
      const delay = Math.round(wait ?? backoff);
      this.retryAt = Date.now() + delay;
      clearTimeout(this.timer);
      this.timer = undefined;
      this.schedule(delay);
      this.save();
      return this.settled();
    }
    const sent = new Set(batch.map((message) => message.messageId));
    this.queue = this.queue.filter((message) => !sent.has(message.messageId));
    this.failures = this.retryAt = 0;
    this.save();
    if (this.unsent().length) this.send(this.waiting.length > 0);
    else if (!this.queue.length) this.settled();
  }

  private settled(): void {
    for (const resolve of this.waiting.splice(0)) resolve();
  }

  /** The page is going away: what is not in flight goes as beacons, and all of it stays saved
   * (marked closed) until a later page of the site has it confirmed. */
  private unload(): void {
    this.gone = true;
    const online = navigator.onLine !== false && !!navigator.sendBeacon;
    let all = online && !this.sending.size;
    for (const batch of online ? split(this.unsent(), KEEPALIVE_BYTES) : []) {
      all = navigator.sendBeacon(this.o.url, this.body(batch)) && all;
    }
    this.save(true, all ? Date.now() : undefined);
  }

  private save(closed = false, beaconed?: number): void {
    try {
      if (!this.queue.length) return localStorage.removeItem(this.key);
      const saved: Saved = { w: this.o.writeKey, u: this.o.url, t: Date.now(), q: this.queue };
      if (closed) saved.c = 1;
      if (beaconed) saved.b = beaconed;
      localStorage.setItem(this.key, JSON.stringify(saved));
    } catch (error) {
      this.o.log("could not save the queue", error);
    }
  }

  /** Takes over the queues of pages that are gone (closed, or silent for STALE). */
  private adopt(): void {
    const now = Date.now();
    const seen = new Set<string>();
    try {
      for (const key of Object.keys(localStorage)) {
        if (!key.startsWith(PREFIX)) continue;
        const saved = JSON.parse(localStorage.getItem(key) ?? "null") as Saved | null;
        if (!saved || saved.w !== this.o.writeKey || saved.u !== this.o.url) continue;
        if (!saved.c && now - saved.t < STALE) continue;
        localStorage.removeItem(key);
        if (saved.b && now - saved.b > BEACON_TRUST) continue;
        for (const message of saved.q) {
          if (!seen.has(message.messageId)) this.queue.push(message);
          seen.add(message.messageId);
        }
      }
    } catch (error) {
      this.o.log("could not read saved queues", error);
    }
    if (!this.queue.length) return;
    this.queue.sort((a, b) => a.timestamp.localeCompare(b.timestamp));
    this.save();
    this.schedule(0);
  }
}
