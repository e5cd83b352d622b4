// Builds the dashboard into OUT (default ../build/release/web): esbuild
// bundles src/main.js (with uPlot and the CSS) into OUT/ui/app-<hash>.js and
// app-<hash>.css, and OUT/index.html is src/index.html with those names put
// in. Hashed names let the server mark /ui/ files immutable (docs/dashboard.md).
import * as esbuild from "esbuild";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] || join(here, "..", "build", "release", "web"));
rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "ui"), { recursive: true });

const result = await esbuild.build({
  entryPoints: { app: join(here, "src", "main.js") },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["chrome110", "firefox110", "safari16"],
  outdir: join(out, "ui"),
  entryNames: "[name]-[hash]",
  metafile: true,
  logLevel: "warning",
});
const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
const js = outputs.find((n) => n.endsWith(".js"));
const css = outputs.find((n) => n.endsWith(".css"));
if (!js || !css) throw new Error("esbuild wrote no app .js or .css: " + outputs.join(", "));
const html = readFileSync(join(here, "src", "index.html"), "utf8")
  .replace("{{APP_JS}}", "/ui/" + js)
  .replace("{{APP_CSS}}", "/ui/" + css);
writeFileSync(join(out, "index.html"), html);
console.log(`  WEB     ${out}/index.html, ui/${js}, ui/${css}`);
