import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Cairn } from "../src/analytics";
import { clickProperties, trackClicks, trackHistory, trackScrollDepth } from "../src/helpers";
import type { Message } from "../src/types";
import { clearStorage, mockFetch } from "./support";

let sent: Message[];

function cairn(): Cairn {
  const c = new Cairn("KEY", { host: "https://cairn.test", flushAt: 1000 });
  vi.spyOn(c, "track");
  const push = (c as unknown as { delivery: { push: (m: Message) => void } }).delivery;
  vi.spyOn(push, "push").mockImplementation((message: Message) => void sent.push(message));
  return c;
}

beforeEach(() => {
  clearStorage();
  mockFetch();
  sent = [];
  document.body.innerHTML = "";
});
afterEach(() => vi.useRealTimers());

describe("history", () => {
  it("a page view for each route change, the previous URL as its referrer", async () => {
    vi.useFakeTimers();
    const c = cairn();
    trackHistory(c);
    history.pushState(null, "", "/a?x=1");
    await vi.advanceTimersByTimeAsync(50);
    history.pushState(null, "", "/a?x=1#section"); // the hash alone is no new page
    history.replaceState(null, "", "/a?x=1");
    await vi.advanceTimersByTimeAsync(50);
    history.pushState(null, "", "/redirecting");
    history.replaceState(null, "", "/b"); // a redirect: one page view, of where it ended
    await vi.advanceTimersByTimeAsync(50);
    history.pushState(null, "", "/a?x=1");
    dispatchEvent(new PopStateEvent("popstate"));
    await vi.advanceTimersByTimeAsync(50);
    const views = sent.map((m) => m.properties as Record<string, string>);
    expect(sent.every((m) => m.type === "page")).toBe(true);
    expect(views.map((p) => p.path)).toEqual(["/a", "/b", "/a"]);
    expect(views[1].referrer).toBe("https://www.example.com/a?x=1");
    expect((sent[2].context.page as Record<string, string>).referrer).toBe("https://www.example.com/b");
    history.replaceState(null, "", "/pricing?utm_source=news");
    await vi.advanceTimersByTimeAsync(50);
  });
});

describe("clicks", () => {
  it("data-cairn-track and data-cairn-prop-* become a track call with snake_case properties", () => {
    const c = cairn();
    trackClicks(c);
    document.body.innerHTML = `
      <button data-cairn-track="Plan Selected" data-cairn-prop-plan-name="Pro"
              data-cairn-prop-price="49.5" data-cairn-prop-seats="3" data-cairn-prop-annual="true"
              data-cairn-prop-zip="02134" data-cairn-prop-Coupon_Code="X1">
        <span id="inner">Choose</span>
      </button>
      <button id="plain">Nothing</button>`;
    document.getElementById("inner")!.click();
    document.getElementById("plain")!.click();
    expect(c.track).toHaveBeenCalledTimes(1);
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ type: "track", event: "Plan Selected" });
    expect(sent[0].properties).toEqual({
      plan_name: "Pro",
      price: 49.5,
      seats: 3,
      annual: true,
      zip: "02134",
      coupon_code: "X1",
    });
  });

  it("sees clicks that the page stops from propagating", () => {
    const c = cairn();
    trackClicks(c);
    document.body.innerHTML = '<a data-cairn-track="Link Clicked" href="#">x</a>';
    const link = document.querySelector("a")!;
    link.addEventListener("click", (event) => event.stopPropagation());
    link.click();
    expect(sent.map((m) => m.event)).toEqual(["Link Clicked"]);
  });

  it("clickProperties is empty without prop attributes", () => {
    document.body.innerHTML = '<div data-cairn-track="X"></div>';
    expect(clickProperties(document.querySelector("div")!)).toEqual({});
  });
});

describe("scroll depth", () => {
  function scrollTo(y: number): void {
    Object.defineProperty(window, "scrollY", { value: y, configurable: true });
    dispatchEvent(new Event("scroll"));
  }

  it("Page Scrolled at 25/50/75/100, each once per page view", async () => {
    vi.useFakeTimers();
    Object.defineProperty(window, "innerHeight", { value: 200, configurable: true });
    Object.defineProperty(document.documentElement, "scrollHeight", { value: 1000, configurable: true });
    const c = cairn();
    trackScrollDepth(c);
    scrollTo(100); // sees 300 of 1000 px
    await vi.advanceTimersByTimeAsync(100);
    scrollTo(0); // back up: nothing new
    await vi.advanceTimersByTimeAsync(100);
    expect(sent.map((m) => m.properties)).toEqual([{ depth: 25 }]);
    scrollTo(800); // to the bottom at once: the marks passed on the way count too
    await vi.advanceTimersByTimeAsync(100);
    expect(sent.map((m) => m.properties)).toEqual([
      { depth: 25 },
      { depth: 50 },
      { depth: 75 },
      { depth: 100 },
    ]);
    expect(new Set(sent.map((m) => m.event))).toEqual(new Set(["Page Scrolled"]));
    c.page();
    sent = [];
    scrollTo(300);
    await vi.advanceTimersByTimeAsync(100);
    expect(sent.map((m) => m.properties)).toEqual([{ depth: 25 }, { depth: 50 }]);
  });
});
