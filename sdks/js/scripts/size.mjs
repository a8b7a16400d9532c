// The size budget of cairn.js: 10 KB gzipped (docs/sdk-js.md). Prints the size; fails over budget.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { OUTPUT } from "./build.mjs";

export const BUDGET = 10 * 1024;

export function gzippedSize(code) {
  return gzipSync(code, { level: 9 }).length;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const code = readFileSync(OUTPUT);
  const size = gzippedSize(code);
  console.log(`cairn.js: ${code.length} bytes, ${size} gzipped (budget ${BUDGET})`);
  if (size > BUDGET) {
    console.error("cairn.js is over its size budget");
    process.exit(1);
  }
}
