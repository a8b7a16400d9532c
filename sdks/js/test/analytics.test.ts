import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Cairn } from "../src/analytics";
import { clearStorage, cookies, messages, mockFetch, settle } from "./support";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function cairn(): Cairn {
  return new Cairn("KEY", { host: "https://cairn.test", flushAt: 1000, cookie: { domain: undefined } });
}

beforeEach(() => {
  clearStorage();
  mockFetch();
});
afterEach(() => vi.useRealTimers());

describe("messages", () => {
  it("carry a messageId, a timestamp, the anonymous id and the context", () => {
    const before = Date.now();
    const message = cairn().track("Order Completed", { total: 42.5 });
    expect(message).toMatchObject({
      type: "track",
      event: "Order Completed",
      properties: { total: 42.5 },
    });
    expect(message.messageId).toMatch(UUID);
    expect(Date.parse(message.timestamp)).toBeGreaterThanOrEqual(before);
    expect(message.timestamp).toMatch(/Z$/);
    expect(message.anonymousId).toMatch(UUID);
    expect(message.userId).toBeUndefined();
    expect(message.context).toMatchObject({ library: { name: "cairn.js" }, page: { path: "/pricing" } });
  });

  it("keep one anonymous id across instances (pages), in analytics.js's places", () => {
    const first = cairn().track("A").anonymousId;
    expect(cairn().track("B").anonymousId).toBe(first);
    expect(cookies().ajs_anonymous_id).toBe(first);
    expect(localStorage.getItem("ajs_anonymous_id")).toBe(JSON.stringify(first));
  });

  it("take an explicit timestamp, anonymous id, context and integrations", () => {
    const message = cairn().track("A", {}, {
      timestamp: new Date("2024-05-01T10:00:00Z"),
      anonymousId: "anon-9",
      context: { ip: "0.0.0.0" },
      integrations: { All: false },
    });
    expect(message.timestamp).toBe("2024-05-01T10:00:00.000Z");
    expect(message.anonymousId).toBe("anon-9");
    expect(message.context.ip).toBe("0.0.0.0");
    expect(message.integrations).toEqual({ All: false });
  });
});

describe("identify", () => {
  it("stores the user id and traits, and sends only this call's traits", () => {
    const c = cairn();
    c.identify("u-1", { email: "ada@example.com" });
    const second = c.identify({ plan: "pro" });
    expect(second.userId).toBe("u-1");
    expect(second.traits).toEqual({ plan: "pro" });
    expect(c.traits()).toEqual({ email: "ada@example.com", plan: "pro" });
    expect(cookies().ajs_user_id).toBe("u-1");
    expect(JSON.parse(localStorage.getItem("ajs_user_traits")!)).toEqual(c.traits());
    expect(c.track("A").userId).toBe("u-1");
  });

  it("puts the user_hash in context", () => {
    const message = cairn().identify("u-1", {}, { user_hash: "ab12" });
    expect(message.context.user_hash).toBe("ab12");
  });

  it("keeps the anonymous id when a visitor signs in, but not when the user changes", () => {
    const c = cairn();
    const visitor = c.anonymousId();
    expect(c.identify("u-1", { plan: "pro" }).anonymousId).toBe(visitor);
    const other = c.identify("u-2");
    expect(other.anonymousId).not.toBe(visitor);
    expect(c.traits()).toEqual({});
  });

  it("turns numeric ids into strings", () => {
    expect(cairn().identify(42).userId).toBe("42");
  });
});

describe("page and screen", () => {
  it("page() has the page fields as properties", () => {
    document.title = "Pricing";
    const message = cairn().page();
    expect(message.properties).toEqual({
      path: "/pricing",
      referrer: "",
      search: "?utm_source=news",
      title: "Pricing",
      url: "https://www.example.com/pricing?utm_source=news",
    });
    expect(message.name).toBeUndefined();
  });

  it("page(category, name, properties, options)", () => {
    const message = cairn().page("Docs", "Start", { section: "intro" }, { context: { x: 1 } });
    expect(message).toMatchObject({ category: "Docs", name: "Start" });
    expect(message.properties).toMatchObject({ section: "intro", name: "Start", category: "Docs" });
    expect(message.context.x).toBe(1);
  });

  it("page(name, properties)", () => {
    const message = cairn().page("Start", { section: "intro" });
    expect(message).toMatchObject({ name: "Start", properties: { section: "intro" } });
    expect(message.category).toBeUndefined();
  });

  it("screen(name, properties)", () => {
    const message = cairn().screen("Home", { tab: 2 });
    expect(message).toMatchObject({ type: "screen", name: "Home", properties: { tab: 2, name: "Home" } });
  });
});

describe("group and alias", () => {
  it("group stores the account, and later calls carry it as context.groupId", () => {
    const c = cairn();
    const group = c.group("acct-7", { name: "Acme" });
    expect(group).toMatchObject({ type: "group", groupId: "acct-7", traits: { name: "Acme" } });
    expect(group.context.groupId).toBeUndefined();
    expect(cookies().ajs_group_id).toBe("acct-7");
    expect(JSON.parse(localStorage.getItem("ajs_group_properties")!)).toEqual({ name: "Acme" });
    expect(c.track("Invite Sent").context.groupId).toBe("acct-7");
  });

  it("alias ties the new user id to the anonymous id by default", () => {
    const c = cairn();
    const message = c.alias("u-9");
    expect(message).toMatchObject({ type: "alias", userId: "u-9", previousId: c.anonymousId() });
    expect(c.alias("u-10", "u-9")).toMatchObject({ userId: "u-10", previousId: "u-9" });
  });
});

describe("reset", () => {
  it("forgets the user, traits and account and starts a new anonymous id", () => {
    const c = cairn();
    const visitor = c.anonymousId();
    c.identify("u-1", { plan: "pro" });
    c.group("acct-7");
    c.reset();
    expect(c.userId()).toBeNull();
    expect(c.traits()).toEqual({});
    expect(c.groupId()).toBeNull();
    expect(cookies().ajs_user_id ?? "").toBe("");
    expect(localStorage.getItem("ajs_user_traits")).toBeNull();
    const next = c.track("A");
    expect(next.userId).toBeUndefined();
    expect(next.anonymousId).not.toBe(visitor);
  });
});

describe("ready and callbacks", () => {
  it("ready runs after start, or at once when already started", () => {
    const c = cairn();
    const calls: string[] = [];
    c.ready(() => calls.push("before"));
    expect(calls).toEqual([]);
    c.start();
    c.ready(() => calls.push("after"));
    expect(calls).toEqual(["before", "after"]);
  });

  it("a trailing function is called back with the message once it is delivered", async () => {
    const sent = mockFetch();
    const callback = vi.fn();
    const message = cairn().track("A", { x: 1 }, callback);
    expect(message.properties).toEqual({ x: 1 });
    await vi.waitFor(() => expect(callback).toHaveBeenCalledWith(message));
    expect(messages(sent).map((m) => m.messageId)).toEqual([message.messageId]);
    await settle();
  });
});
