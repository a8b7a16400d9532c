import { beforeEach, describe, expect, it } from "vitest";
import { cookieDomain, readCookie, Store } from "../src/storage";
import { clearStorage, cookies } from "./support";

beforeEach(clearStorage);

describe("Store", () => {
  it("writes ids as analytics.js does: raw cookie, JSON in localStorage", () => {
    new Store().set("ajs_anonymous_id", "a-1");
    expect(cookies().ajs_anonymous_id).toBe("a-1");
    expect(localStorage.getItem("ajs_anonymous_id")).toBe('"a-1"');
  });

  it("keeps traits in localStorage only", () => {
    new Store().set("ajs_user_traits", { plan: "pro" });
    expect(localStorage.getItem("ajs_user_traits")).toBe('{"plan":"pro"}');
    expect(cookies().ajs_user_traits).toBeUndefined();
  });

  it("reads what analytics-next wrote, and copies a cookie-only id into localStorage", () => {
    document.cookie = "ajs_anonymous_id=from-next; path=/";
    expect(new Store({ domain: undefined }).get("ajs_anonymous_id")).toBe("from-next");
    expect(localStorage.getItem("ajs_anonymous_id")).toBe('"from-next"');
  });

  it("reads the classic analytics.js cookie, JSON-quoted and URL-encoded", () => {
    document.cookie = "ajs_user_id=%22u%2042%22; path=/";
    expect(new Store({ domain: undefined }).get("ajs_user_id")).toBe("u 42");
  });

  it("turns numeric ids into strings", () => {
    document.cookie = "ajs_user_id=42; path=/";
    expect(new Store({ domain: undefined }).get("ajs_user_id")).toBe("42");
  });

  it("prefers the cookie for the anonymous id and localStorage for the user id", () => {
    document.cookie = "ajs_anonymous_id=cookie; path=/";
    document.cookie = "ajs_user_id=cookie; path=/";
    localStorage.setItem("ajs_anonymous_id", '"storage"');
    localStorage.setItem("ajs_user_id", '"storage"');
    const store = new Store({ domain: undefined });
    expect(store.get("ajs_anonymous_id")).toBe("cookie");
    expect(store.get("ajs_user_id")).toBe("storage");
  });

  it("encodes values that are not cookie-safe", () => {
    new Store({ domain: undefined }).set("ajs_user_id", "ada; x=1");
    expect(readCookie("ajs_user_id")).toBe("ada; x=1");
    expect(readCookie("x")).toBeNull();
  });

  it("removes ids set to null", () => {
    const store = new Store({ domain: undefined });
    store.set("ajs_user_id", "u");
    store.set("ajs_user_id", null);
    expect(readCookie("ajs_user_id")).toBeNull();
    expect(localStorage.getItem("ajs_user_id")).toBeNull();
    expect(store.get("ajs_user_id")).toBeNull();
  });
});

describe("cookieDomain", () => {
  it("has none for an IP address or localhost", () => {
    expect(cookieDomain("127.0.0.1")).toBeUndefined();
    expect(cookieDomain("localhost")).toBeUndefined();
  });

  it("finds the widest domain the browser accepts", () => {
    expect(cookieDomain("www.example.com")).toBe("example.com");
  });
});
