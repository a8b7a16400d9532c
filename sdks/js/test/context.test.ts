import { afterEach, describe, expect, it } from "vitest";
import { browserContext, campaign, LIBRARY, pageFields } from "../src/context";

afterEach(() => {
  document.head.innerHTML = "";
  history.replaceState(null, "", "/pricing?utm_source=news");
});

describe("pageFields", () => {
  it("describes the page as analytics.js does, without the hash", () => {
    history.replaceState(null, "", "/docs/start?q=1#install");
    document.title = "Start";
    expect(pageFields("https://ref.example/")).toEqual({
      path: "/docs/start",
      referrer: "https://ref.example/",
      search: "?q=1",
      title: "Start",
      url: "https://www.example.com/docs/start?q=1",
    });
  });

  it("takes path and url from a canonical link", () => {
    document.head.innerHTML = '<link rel="canonical" href="https://example.com/canonical">';
    history.replaceState(null, "", "/shown?x=2");
    expect(pageFields("")).toMatchObject({
      path: "/canonical",
      search: "?x=2",
      url: "https://example.com/canonical?x=2",
    });
  });
});

describe("campaign", () => {
  it("maps utm_* parameters, utm_campaign to name", () => {
    const search = "?utm_source=news&utm_medium=email&utm_campaign=spring&utm_term=trail%20boots" +
      "&utm_content=hero&utm_id=7&other=1";
    expect(campaign(search)).toEqual({
      source: "news",
      medium: "email",
      name: "spring",
      term: "trail boots",
      content: "hero",
      id: "7",
    });
  });

  it("is absent without utm parameters", () => {
    expect(campaign("?q=1")).toBeUndefined();
  });
});

describe("browserContext", () => {
  it("carries page, user agent, locale, timezone, campaign, screen and library", () => {
    const context = browserContext("");
    expect(context.library).toEqual(LIBRARY);
    expect(LIBRARY).toEqual({ name: "cairn.js", version: "0.0.0-test" });
    expect(context.page).toMatchObject({ path: "/pricing", search: "?utm_source=news" });
    expect(context.userAgent).toBe(navigator.userAgent);
    expect(context.locale).toBe(navigator.language);
    expect(typeof context.timezone).toBe("string");
    expect(context.campaign).toEqual({ source: "news" });
    expect(context.screen).toEqual({
      width: screen.width,
      height: screen.height,
      density: devicePixelRatio,
    });
  });

  it("adds the low-entropy userAgentData when the browser has it", () => {
    const data = { brands: [{ brand: "Chromium", version: "120" }], mobile: false, platform: "Linux" };
    Object.defineProperty(navigator, "userAgentData", { value: data, configurable: true });
    try {
      expect(browserContext("").userAgentData).toEqual(data);
    } finally {
      delete (navigator as unknown as Record<string, unknown>).userAgentData;
    }
  });
});
