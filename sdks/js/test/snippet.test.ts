import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Cairn } from "../src/analytics";
import { clearStorage, messages, mockFetch } from "./support";

const SNIPPET = readFileSync(join(import.meta.dirname, "../snippet.js"), "utf8");
const DOCS = readFileSync(join(import.meta.dirname, "../../../docs/sdk-js.md"), "utf8");

function paste(host = "https://cairn.test"): void {
  new Function(SNIPPET.replace("https://cairn.example.com", host))();
}

async function loadLibrary(): Promise<Cairn> {
  await import("../src/index");
  return window.cairn as Cairn;
}

beforeEach(() => {
  clearStorage();
  vi.resetModules();
  delete window.cairn;
  document.head.innerHTML = "";
});
afterEach(() => {
  delete (document as unknown as Record<string, unknown>).currentScript;
});

describe("the snippet", () => {
  it("is the one in docs/sdk-js.md", () => {
    expect(DOCS).toContain(SNIPPET.trim());
  });

  it("loads cairn.js from Cairn and buffers calls until it has loaded", async () => {
    const sent = mockFetch();
    paste();
    const stub = window.cairn as unknown as { track: (...args: unknown[]) => unknown };
    const script = document.head.querySelector("script")!;
    expect(script.src).toBe("https://cairn.test/static/cairn.js");
    expect(script.async).toBe(true);
    const ready = vi.fn();
    (window.cairn as Cairn).identify("u-1", { plan: "pro" });
    (window.cairn as Cairn).track("Signed In");
    (window.cairn as Cairn).ready(ready);
    expect(window.cairn).toHaveLength(3);

    const cairn = await loadLibrary();
    expect(cairn.initialized).toBe(true);
    expect(cairn.writeKey).toBe("WRITE_KEY");
    expect(ready).toHaveBeenCalledOnce();
    stub.track("Through The Stub"); // a reference kept from before the load still works
    await cairn.flush();
    const got = messages(sent);
    expect(got.map((m) => m.type)).toEqual(["identify", "track", "page", "track"]);
    expect(got.every((m) => m.userId === "u-1")).toBe(true);
    expect(sent[0].url).toBe("https://cairn.test/v1/batch");
    expect(sent[0].body.writeKey).toBe("WRITE_KEY");
  });

  it("makes no automatic page view when the page calls page() itself", async () => {
    const sent = mockFetch();
    paste();
    (window.cairn as Cairn).page("Home");
    const cairn = await loadLibrary();
    await cairn.flush();
    expect(messages(sent).map((m) => [m.type, m.name])).toEqual([["page", "Home"]]);
  });
});

describe("a plain script tag", () => {
  it("takes the write key from data-write-key and sends to where it was loaded from", async () => {
    const sent = mockFetch();
    const script = document.createElement("script");
    script.src = "https://cairn.other/static/cairn.js";
    script.setAttribute("data-write-key", "TAG_KEY");
    Object.defineProperty(document, "currentScript", { value: script, configurable: true });
    const cairn = await loadLibrary();
    await cairn.flush();
    expect(sent[0].url).toBe("https://cairn.other/v1/batch");
    expect(messages(sent).map((m) => m.type)).toEqual(["page"]);
  });

  it("without a write key, waits for cairn.load()", async () => {
    const sent = mockFetch();
    await import("../src/index");
    const stub = window.cairn as unknown as { load: (key: string, options: object) => Cairn };
    const cairn = stub.load("LATE_KEY", { host: "https://cairn.late", page: false });
    cairn.track("Loaded Late");
    await cairn.flush();
    expect(sent[0].url).toBe("https://cairn.late/v1/batch");
    expect(messages(sent).map((m) => m.event)).toEqual(["Loaded Late"]);
  });
});
