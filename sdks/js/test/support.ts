import { vi } from "vitest";

export interface Sent {
  url: string;
  init: RequestInit;
  body: { batch: Record<string, any>[]; sentAt: string; writeKey: string };
}

/** One answer per request, in order; then 200. 0 is a network error. */
export type Answer = number | { status: number; retryAfter?: string };

/** Replaces `fetch`; returns the requests it saw. */
export function mockFetch(...answers: Answer[]): Sent[] {
  const sent: Sent[] = [];
  vi.stubGlobal(
    "fetch",
    vi.fn(async (url: string, init: RequestInit) => {
      sent.push({ url, init, body: JSON.parse(String(init.body)) });
      const answer = answers.shift() ?? 200;
      const { status, retryAfter } = typeof answer === "number" ? { status: answer } : answer;
      if (status === 0) throw new TypeError("Failed to fetch");
      const headers = retryAfter ? { "Retry-After": retryAfter } : undefined;
      return new Response('{"success":true}', { status, headers });
    }),
  );
  return sent;
}

/** Every message of every request, in order. */
export function messages(sent: Sent[]): Record<string, any>[] {
  return sent.flatMap((request) => request.body.batch);
}

export function clearStorage(): void {
  localStorage.clear();
  for (const pair of document.cookie.split(/; */)) {
    const name = pair.split("=")[0];
    if (!name) continue;
    for (const domain of ["", "; domain=example.com", "; domain=www.example.com"]) {
      document.cookie = `${name}=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT${domain}`;
    }
  }
}

export function cookies(): Record<string, string> {
  return Object.fromEntries(
    document.cookie
      .split(/; */)
      .filter(Boolean)
      .map((pair) => [pair.slice(0, pair.indexOf("=")), pair.slice(pair.indexOf("=") + 1)]),
  );
}

/** Lets pending promise callbacks (a mocked fetch's answer) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}
