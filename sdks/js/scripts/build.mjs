// Builds src/index.ts into the server's static files: src/cairn/web/static/cairn.js.
// `node scripts/build.mjs --stdout` prints the bundle instead (the tests compare the two).
import { build } from "esbuild";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

// paths, not URLs: under the tests' DOM, `URL` is the DOM's class, which node:fs refuses
const root = join(import.meta.dirname, "..");
export const OUTPUT = join(root, "../../src/cairn/web/static/cairn.js");

export async function bundle() {
  const { version } = JSON.parse(readFileSync(`${root}/package.json`, "utf8"));
  const result = await build({
    entryPoints: [`${root}/src/index.ts`],
    bundle: true,
    minify: true,
    format: "iife",
    target: "es2019",
    define: { __VERSION__: JSON.stringify(version) },
    banner: { js: `/*! cairn.js ${version} | MIT | built from sdks/js by \`make js\` */` },
    legalComments: "none",
    write: false,
  });
  return result.outputFiles[0].text;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const code = await bundle();
  if (process.argv.includes("--stdout")) process.stdout.write(code);
  else writeFileSync(OUTPUT, code);
}
