import { Worker } from 'node:worker_threads';
import { RembgError } from './errors.js';
import type { MaskOptions } from './pixels.js';
import type { PixelReply, PixelRequest } from './pixel-thread.js';
import { threadEntry } from './thread-entry.js';

/**
 * The pixel threads of a rembg instance: one per image it works on at once
 * (REMBG_CONCURRENCY), so decoding, the model's input and the mask at full
 * size never run on the event loop that answers /health. A removal leases a
 * thread for both of its steps (the thread keeps the decoded photo between
 * them). A thread that dies fails its call and is replaced.
 */
const threadUrl = threadEntry('pixel-thread');

type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

class PixelThread {
  private worker: Worker;
  private pending: { id: number; resolve: (reply: PixelReply) => void; reject: (error: Error) => void } | null = null;
  private nextId = 1;
  private closed = false;

  constructor() {
    this.worker = this.start();
  }

  call(request: WithoutId<PixelRequest>, transfer: ArrayBuffer[] = []): Promise<PixelReply> {
    if (this.closed) return Promise.reject(new Error('pixel threads closed'));
    if (this.pending) return Promise.reject(new Error('pixel thread is busy'));
    const id = this.nextId++;
    return new Promise<PixelReply>((resolve, reject) => {
      this.pending = { id, resolve, reject };
      this.worker.postMessage({ ...request, id } as PixelRequest, transfer);
    }).then((reply) => {
      if (reply.ok) return reply;
      throw reply.status !== null ? new RembgError(reply.status, reply.message) : new Error(reply.message);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.fail(new Error('pixel threads closed'));
    await this.worker.terminate();
  }

  private start(): Worker {
    const worker = new Worker(threadUrl);
    worker.on('message', (reply: PixelReply) => {
      const pending = this.pending;
      if (pending?.id !== reply.id) return;
      this.pending = null;
      pending.resolve(reply);
    });
    worker.on('error', (error) => this.fail(error));
    worker.on('exit', (code) => {
      this.fail(new Error(`pixel thread exited (${code})`));
      if (!this.closed) this.worker = this.start();
    });
    return worker;
  }

  private fail(error: Error): void {
    const pending = this.pending;
    this.pending = null;
    pending?.reject(error);
  }
}

/** One removal's hold on a pixel thread: prepare, then finish, then release (always). */
export interface PixelLease {
  prepare(
    bytes: Uint8Array,
    maxPixels: number,
    side: number,
    mean: readonly number[],
    std: readonly number[],
  ): Promise<{ input: Float32Array; width: number; height: number }>;
  finish(output: Float32Array, side: number, options: MaskOptions): Promise<Buffer>;
  release(): void;
}

export class PixelPool {
  private readonly threads: PixelThread[];
  private readonly idle: PixelThread[];
  private readonly waiting: ((thread: PixelThread) => void)[] = [];
  private readonly started: Promise<void>;

  constructor(readonly size: number) {
    this.threads = Array.from({ length: size }, () => new PixelThread());
    this.idle = [...this.threads];
    // A first call each: answered once the thread's modules are loaded.
    this.started = Promise.all(this.threads.map((t) => t.call({ type: 'drop' }))).then(() => undefined);
    this.started.catch(() => undefined);
  }

  /** Resolves once every thread has loaded its modules (sharp, the pixel code); rejects if one could not. */
  ready(): Promise<void> {
    return this.started;
  }

  /** A thread of its own for one removal; waits while all are leased (the instance's limiter keeps that rare). */
  async lease(signal?: AbortSignal): Promise<PixelLease> {
    signal?.throwIfAborted();
    // not before the start-up calls are answered (a thread runs one call at a time)
    await this.started.catch(() => undefined);
    const thread =
      this.idle.pop() ??
      (await new Promise<PixelThread>((resolve, reject) => {
        const waiter = (t: PixelThread) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(t);
        };
        const onAbort = () => {
          this.waiting.splice(this.waiting.indexOf(waiter), 1);
          reject(signal?.reason);
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        this.waiting.push(waiter);
      }));
    let holding = false;
    let released = false;
    return {
      prepare: async (bytes, maxPixels, side, mean, std) => {
        holding = true;
        const reply = await thread.call({ type: 'prepare', bytes, maxPixels, side, mean: [...mean], std: [...std] });
        if (!('input' in reply)) throw new Error('pixel thread answered prepare without input');
        return { input: reply.input, width: reply.width, height: reply.height };
      },
      finish: async (output, side, options) => {
        holding = false;
        const reply = await thread.call({ type: 'finish', output, side, options }, [output.buffer as ArrayBuffer]);
        if (!('png' in reply)) throw new Error('pixel thread answered finish without a PNG');
        return Buffer.from(reply.png.buffer, reply.png.byteOffset, reply.png.length);
      },
      release: () => {
        if (released) return;
        released = true;
        const handOver = () => {
          const next = this.waiting.shift();
          if (next) next(thread);
          else this.idle.push(thread);
        };
        // A photo prepared but never finished is dropped before the thread serves anyone else.
        if (holding) void thread.call({ type: 'drop' }).then(handOver, handOver);
        else handOver();
      },
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.threads.map((t) => t.close()));
  }
}
