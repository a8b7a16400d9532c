import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
// @ts-expect-error: plain ES module scripts, no types
import { bundle, OUTPUT } from "../scripts/build.mjs";
// @ts-expect-error: plain ES module scripts, no types
import { BUDGET, gzippedSize } from "../scripts/size.mjs";

describe("the built cairn.js", () => {
  it("is the build of this source (run `make js` after changing it)", async () => {
    expect(readFileSync(OUTPUT, "utf8")).toBe(await bundle());
  });

  it("stays within 10 KB gzipped", () => {
    expect(gzippedSize(readFileSync(OUTPUT))).toBeLessThanOrEqual(BUDGET);
  });
});
