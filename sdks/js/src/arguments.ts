/** analytics.js's flexible call signatures, resolved to plain fields (strings for ids). */
import type { CallOptions, Callback, Fields } from "./types";

type Id = string | number | null | undefined;

export interface Resolved {
  options: CallOptions;
  callback?: Callback;
}

function isObject(value: unknown): value is Fields {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A trailing function is the callback; it is taken off the arguments. */
function takeCallback(args: unknown[]): Callback | undefined {
  const last = args[args.length - 1];
  if (typeof last !== "function") return undefined;
  args.pop();
  return last as Callback;
}

function options(value: unknown): CallOptions {
  return isObject(value) ? (value as CallOptions) : {};
}

function fields(value: unknown): Fields {
  return isObject(value) ? { ...value } : {};
}

export function id(value: Id): string | undefined {
  return value === null || value === undefined || value === "" ? undefined : String(value);
}

/** `track(event, properties?, options?, callback?)` */
export function trackArguments(args: unknown[]): Resolved & { event: string; properties: Fields } {
  const callback = takeCallback(args);
  const [event, properties, opts] = args;
  return { event: String(event), properties: fields(properties), options: options(opts), callback };
}

/** `page([category], [name], [properties], [options], [callback])`, and the same for `screen`. */
export function pageArguments(
  args: unknown[],
): Resolved & { category?: string; name?: string; properties: Fields } {
  const callback = takeCallback(args);
  let category: unknown, name: unknown;
  if (typeof args[0] === "string" && typeof args[1] === "string") [category, name] = args.splice(0, 2);
  else if (typeof args[0] === "string" || args[0] == null) [name] = args.splice(0, 1);
  return {
    category: (category as string) ?? undefined,
    name: (name as string) || undefined,
    properties: fields(args[0]),
    options: options(args[1]),
    callback,
  };
}

/** `identify([userId], [traits], [options], [callback])`, `group(groupId, [traits], ...)` */
export function userArguments(args: unknown[]): Resolved & { id?: string; traits: Fields } {
  const callback = takeCallback(args);
  const leading = isObject(args[0]) ? undefined : args.shift();
  return { id: id(leading as Id), traits: fields(args[0]), options: options(args[1]), callback };
}

/** `alias(userId, [previousId], [options], [callback])` */
export function aliasArguments(args: unknown[]): Resolved & { to?: string; from?: string } {
  const callback = takeCallback(args);
  const [to, from, opts] = args;
  return { to: id(to as Id), from: id(from as Id), options: options(opts), callback };
}
