/**
 * cairn.js: Cairn's browser SDK. Loaded by the snippet (docs/sdk-js.md), it replaces the snippet's
 * `window.cairn` stub with the real object, replays the calls the stub buffered, and sends the
 * automatic first page view.
 */
import { Cairn } from "./analytics";
import type { LoadOptions } from "./types";

type Call = [string, ...unknown[]];

/** What the snippet leaves behind: an array of buffered calls with the arguments of `load`. */
interface Stub extends Array<Call> {
  initialized?: boolean;
  load?: (writeKey: string, options?: LoadOptions) => void;
  _writeKey?: string;
  _options?: LoadOptions;
}

declare global {
  interface Window {
    cairn?: Stub | Cairn;
  }
}

const script = document.currentScript as HTMLScriptElement | null;
// Cairn serves cairn.js itself, so where it came from is where events go, unless told otherwise.
const origin = script?.src ? new URL(script.src).origin : location.origin;

function load(writeKey: string, options: LoadOptions = {}, buffered: Call[] = []): Cairn {
  const cairn = new Cairn(writeKey, { host: origin, ...options });
  window.cairn = cairn;
  let paged = false;
  for (const [method, ...args] of buffered) {
    const call = (cairn as unknown as Record<string, unknown>)[method];
    if (typeof call !== "function") continue;
    paged ||= method === "page";
    call.apply(cairn, args);
  }
  if (options.page !== false && !paged) cairn.page();
  cairn.start();
  return cairn;
}

const stub = (window.cairn ?? []) as Stub;
if (!stub.initialized) {
  const start = (writeKey: string, options?: LoadOptions): Cairn =>
    load(writeKey, options ?? stub._options, stub.splice(0));
  const writeKey = stub._writeKey ?? script?.getAttribute("data-write-key");
  if (writeKey) start(writeKey);
  else window.cairn = Object.assign(stub, { load: start });
}
