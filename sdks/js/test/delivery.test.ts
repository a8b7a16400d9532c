import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Delivery, split } from "../src/delivery";
import type { DeliveryOptions } from "../src/delivery";
import type { Message } from "../src/types";
import { messages, mockFetch, settle } from "./support";

const URL = "https://cairn.test/v1/batch";
let made: Delivery[] = [];

function delivery(options: Partial<DeliveryOptions> = {}): Delivery {
  const made_ = new Delivery({
    url: URL,
    writeKey: "KEY",
    flushAt: 20,
    flushInterval: 1000,
    maxQueue: 1000,
    log: () => {},
    ...options,
  });
  made.push(made_);
  return made_;
}

let counter = 0;
function message(fields: Partial<Message> = {}): Message {
  counter += 1;
  return {
    type: "track",
    event: "Tested",
    messageId: `m-${counter}`,
    timestamp: new Date(Date.UTC(2024, 0, 1, 0, 0, counter)).toISOString(),
    anonymousId: "anon",
    context: {},
    ...fields,
  };
}

function saved(): Record<string, any>[] {
  return Object.keys(localStorage)
    .filter((key) => key.startsWith("cairn_queue:"))
    .map((key) => JSON.parse(localStorage.getItem(key)!));
}

function setOnline(online: boolean): void {
  Object.defineProperty(navigator, "onLine", { value: online, configurable: true });
}

beforeEach(() => {
  vi.useFakeTimers();
  localStorage.clear();
  setOnline(true);
});

afterEach(async () => {
  // every queue is empty at the end of a test, so old instances ignore later tests' events
  for (const each of made) expect(each.pending).toBe(0);
  made = [];
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

describe("batching", () => {
  it("sends flushAt messages in one text/plain request with the write key", async () => {
    const sent = mockFetch();
    const d = delivery({ flushAt: 3 });
    const queued = [message(), message(), message()];
    queued.forEach((m) => d.push(m));
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toHaveLength(1);
    const [request] = sent;
    expect(request.url).toBe(URL);
    expect(request.init).toMatchObject({ method: "POST", keepalive: true, credentials: "omit" });
    expect(request.init.headers).toBeUndefined(); // no preflight: a "simple" request
    expect(typeof request.init.body).toBe("string");
    expect(request.body.writeKey).toBe("KEY");
    expect(request.body.batch).toEqual(queued);
    expect(Date.parse(request.body.sentAt)).toBe(Date.now());
  });

  it("sends fewer after flushInterval", async () => {
    const sent = mockFetch();
    const d = delivery();
    d.push(message());
    await vi.advanceTimersByTimeAsync(999);
    expect(sent).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(messages(sent)).toHaveLength(1);
  });

  it("keeps requests under 500 KB", () => {
    const big = Array.from({ length: 30 }, () => message({ properties: { text: "x".repeat(30_000) } }));
    const batches = split(big, 450_000);
    expect(batches.length).toBeGreaterThan(1);
    expect(batches.flat()).toEqual(big);
    for (const batch of batches) expect(JSON.stringify(batch).length).toBeLessThan(450_000);
  });

  it("counts bytes, not characters", () => {
    const wide = Array.from({ length: 4 }, () => message({ properties: { text: "€".repeat(20_000) } }));
    const batches = split(wide, 100_000); // 4 x 60 KB of UTF-8, 4 x 20 K characters
    expect(batches.map((batch) => batch.length)).toEqual([1, 1, 1, 1]);
  });

  it("flush() sends at once and resolves when Cairn has the messages", async () => {
    const sent = mockFetch();
    const d = delivery();
    d.push(message());
    await d.flush();
    expect(messages(sent)).toHaveLength(1);
    expect(d.pending).toBe(0);
    expect(saved()).toEqual([]);
  });
});

describe("retries", () => {
  it("retries a 5xx with backoff, keeping messageId and timestamp; sentAt is new", async () => {
    const sent = mockFetch(503, 500);
    const d = delivery({ flushAt: 1 });
    const queued = message();
    d.push(queued);
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(499);
    expect(sent).toHaveLength(1); // first backoff: 0.5 to 1.5 s
    await vi.advanceTimersByTimeAsync(1001);
    expect(sent).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(3000); // second: 1 to 3 s
    expect(sent).toHaveLength(3);
    expect(sent.map((r) => r.body.batch[0])).toEqual([queued, queued, queued]);
    expect(new Set(sent.map((r) => r.body.sentAt)).size).toBe(3);
    expect(d.pending).toBe(0);
  });

  it("honours Retry-After on a 429, even for new messages", async () => {
    const sent = mockFetch({ status: 429, retryAfter: "3" });
    const d = delivery({ flushAt: 1 });
    d.push(message());
    await vi.advanceTimersByTimeAsync(0);
    d.push(message());
    await vi.advanceTimersByTimeAsync(2999);
    expect(sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(sent).toHaveLength(2);
    expect(sent[1].body.batch).toHaveLength(2);
  });

  it("retries network errors", async () => {
    const sent = mockFetch(0, 0);
    const d = delivery({ flushAt: 1 });
    d.push(message());
    await vi.advanceTimersByTimeAsync(10_000);
    expect(sent).toHaveLength(3);
    expect(d.pending).toBe(0);
  });

  it("drops a batch Cairn refuses with a 4xx", async () => {
    const sent = mockFetch(400);
    const d = delivery({ flushAt: 1 });
    d.push(message());
    await vi.advanceTimersByTimeAsync(60_000);
    expect(sent).toHaveLength(1);
    expect(d.pending).toBe(0);
  });

  it("waits while offline and sends when the browser is back online", async () => {
    const sent = mockFetch();
    setOnline(false);
    const d = delivery({ flushAt: 1 });
    d.push(message());
    await vi.advanceTimersByTimeAsync(5000);
    expect(sent).toHaveLength(0);
    setOnline(true);
    dispatchEvent(new Event("online"));
    await vi.advanceTimersByTimeAsync(0);
    expect(messages(sent)).toHaveLength(1);
  });

  it("after a network error, sends as soon as the browser is back online", async () => {
    const sent = mockFetch(0);
    const d = delivery({ flushAt: 1 });
    d.push(message());
    await vi.advanceTimersByTimeAsync(0);
    setOnline(false);
    dispatchEvent(new Event("offline"));
    setOnline(true);
    dispatchEvent(new Event("online"));
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toHaveLength(2);
    expect(d.pending).toBe(0);
  });

  it("keeps waiting out a Retry-After when the browser comes back online", async () => {
    const sent = mockFetch({ status: 429, retryAfter: "30" });
    const d = delivery({ flushAt: 1 });
    d.push(message());
    await vi.advanceTimersByTimeAsync(0);
    dispatchEvent(new Event("online"));
    await vi.advanceTimersByTimeAsync(29_000);
    expect(sent).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1000);
    expect(sent).toHaveLength(2);
  });

  it("drops the oldest messages past maxQueue", async () => {
    const sent = mockFetch();
    setOnline(false);
    const d = delivery({ maxQueue: 2 });
    const [first, second, third] = [message(), message(), message()];
    [first, second, third].forEach((m) => d.push(m));
    setOnline(true);
    await d.flush();
    expect(messages(sent)).toEqual([second, third]);
  });
});

describe("the saved queue", () => {
  it("mirrors the queue in localStorage until Cairn has it", async () => {
    mockFetch(500);
    const d = delivery({ flushAt: 1 });
    const queued = message();
    d.push(queued);
    expect(saved()).toMatchObject([{ w: "KEY", u: URL, q: [queued] }]);
    await vi.advanceTimersByTimeAsync(0);
    expect(saved()[0].q).toEqual([queued]);
    await vi.advanceTimersByTimeAsync(2000);
    expect(saved()).toEqual([]);
  });

  it("on pagehide, sends beacons and leaves the queue for the next page", async () => {
    const sent = mockFetch();
    const beacons: string[] = [];
    vi.stubGlobal("navigator", Object.assign(navigator, {
      sendBeacon: vi.fn((_url: string, body: string) => beacons.push(body) > 0),
    }));
    const d = delivery();
    const queued = [message(), message()];
    queued.forEach((m) => d.push(m));
    dispatchEvent(new Event("pagehide"));
    expect(beacons.map((body) => JSON.parse(body).batch)).toEqual([queued]);
    expect(saved()).toMatchObject([{ c: 1, b: Date.now(), q: queued }]);
    // a navigation hides the page after pagehide: the beacons have the queue already
    Object.defineProperty(document, "visibilityState", { value: "hidden", configurable: true });
    document.dispatchEvent(new Event("visibilitychange"));
    delete (document as unknown as Record<string, unknown>).visibilityState;
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toHaveLength(0);

    // the next page of the site sends them again (the server dedupes by messageId)
    const next = delivery();
    await vi.advanceTimersByTimeAsync(0);
    expect(messages(sent)).toEqual(queued);
    expect(saved()).toEqual([]);
    // the old page comes back from the back/forward cache and sends its copy (deduped)
    dispatchEvent(Object.assign(new Event("pageshow"), { persisted: true }));
    await d.flush();
    expect(messages(sent)).toEqual([...queued, ...queued]);
    delete (navigator as unknown as Record<string, unknown>).sendBeacon;
    expect(next.pending).toBe(0);
  });

  it("leaves the queues of live pages and of other write keys alone", async () => {
    const sent = mockFetch();
    const live = { w: "KEY", u: URL, t: Date.now(), q: [message()] };
    const other = { w: "OTHER", u: URL, t: 0, c: 1, q: [message()] };
    localStorage.setItem("cairn_queue:live", JSON.stringify(live));
    localStorage.setItem("cairn_queue:other", JSON.stringify(other));
    delivery();
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toHaveLength(0);
    expect(saved()).toHaveLength(2);
  });

  it("takes over the queue of a page gone silent, oldest message first", async () => {
    const sent = mockFetch();
    const [older, newer] = [message(), message()];
    const stale = { w: "KEY", u: URL, t: Date.now() - 11 * 60_000, q: [newer] };
    const closed = { w: "KEY", u: URL, t: Date.now(), c: 1, q: [older, newer] };
    localStorage.setItem("cairn_queue:stale", JSON.stringify(stale));
    localStorage.setItem("cairn_queue:closed", JSON.stringify(closed));
    delivery();
    await vi.advanceTimersByTimeAsync(0);
    expect(messages(sent)).toEqual([older, newer]);
  });

  it("drops a queue that went out as beacons long ago", async () => {
    const sent = mockFetch();
    const old = { w: "KEY", u: URL, t: 0, c: 1, b: Date.now() - 13 * 3600_000, q: [message()] };
    localStorage.setItem("cairn_queue:old", JSON.stringify(old));
    delivery();
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toHaveLength(0);
    expect(saved()).toEqual([]);
    await settle();
  });
});
