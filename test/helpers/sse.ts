import type { Test } from 'tap';

/**
 * A server-sent-events client for tests: a real HTTP connection read as it
 * arrives, with every message kept in order (comment lines too), closed at
 * teardown.
 */
export interface SseMessage {
  event: string;
  id: string | null;
  data: string;
}

export interface SseStream {
  status: number;
  messages: SseMessage[];
  comments: string[];
  /** Resolves with the first message (from the start of the stream) that matches, waiting for it if needed. */
  next(match: (m: SseMessage) => boolean, timeoutMs?: number): Promise<SseMessage>;
  close(): void;
  closed: Promise<void>;
}

export async function openSse(t: Test, url: string, headers: Record<string, string>): Promise<SseStream> {
  const controller = new AbortController();
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: controller.signal });
  const messages: SseMessage[] = [];
  const comments: string[] = [];
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of [...waiters]) w();
  };
  let ended = false;
  const closed = (async () => {
    if (!res.body) return;
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const message: SseMessage = { event: 'message', id: null, data: '' };
          let isMessage = false;
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments.push(line.slice(1).trim());
            else if (line.startsWith('id: ')) message.id = line.slice(4);
            else if (line.startsWith('event: ')) {
              message.event = line.slice(7);
              isMessage = true;
            } else if (line.startsWith('data: ')) {
              message.data += line.slice(6);
              isMessage = true;
            }
          }
          if (isMessage) messages.push(message);
        }
        notify();
      }
    } catch {
      // aborted by close()
    } finally {
      ended = true;
      notify();
    }
  })();
  const stream: SseStream = {
    status: res.status,
    messages,
    comments,
    closed,
    close: () => controller.abort(),
    next(match, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = messages.find(match);
          if (found) {
            cleanup();
            resolve(found);
          } else if (ended) {
            cleanup();
            reject(new Error(`stream ended without the expected message; got ${messages.map((m) => m.event).join(', ')}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no matching message within ${timeoutMs} ms; got ${messages.map((m) => `${m.event}:${m.data}`).join(' | ')}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
  };
  t.teardown(() => controller.abort());
  return stream;
}

export function dataOf<T = Record<string, unknown>>(m: SseMessage): T {
  return JSON.parse(m.data) as T;
}
