import { Worker } from 'node:worker_threads';
import type { ModelSpec } from './models.js';
import type { InferenceReply, InferenceRequest, InferenceThreadData } from './inference-thread.js';
import { threadEntry } from './thread-entry.js';

/**
 * The HTTP side's handle on the inference thread: loads each model once and
 * runs tensors through it in order. If the thread dies, every pending call
 * fails and the instance reports itself unhealthy (its launcher restarts it).
 */
export interface LoadedModel {
  spec: ModelSpec;
  /** input side actually used: the model's own when it declares one */
  size: number;
}

type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;
type Pending = { resolve: (reply: InferenceReply) => void; reject: (error: Error) => void };

const threadUrl = threadEntry('inference-thread');

export class InferenceThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private readonly models = new Map<string, Promise<LoadedModel>>();
  private readonly loaded = new Set<string>();
  private nextId = 1;
  private failure: Error | null = null;

  constructor(threads: number) {
    this.worker = new Worker(threadUrl, {
      workerData: { threads } satisfies InferenceThreadData,
    });
    this.worker.on('message', (reply: InferenceReply) => {
      const entry = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      entry?.resolve(reply);
    });
    this.worker.on('error', (error) => this.fail(error));
    this.worker.on('exit', (code) => this.fail(new Error(`inference thread exited (${code})`)));
  }

  /** Why the thread cannot serve, or null while it can. */
  get broken(): Error | null {
    return this.failure;
  }

  loadedModels(): string[] {
    return [...this.loaded].sort();
  }

  /** Loads a model once; later calls share the first load. */
  load(spec: ModelSpec): Promise<LoadedModel> {
    let model = this.models.get(spec.name);
    if (!model) {
      model = this.call({ type: 'load', model: spec.name, path: spec.path }).then((reply) => {
        this.loaded.add(spec.name);
        return { spec, size: 'size' in reply && reply.size ? reply.size : spec.size };
      });
      this.models.set(spec.name, model);
      model.catch(() => this.models.delete(spec.name));
    }
    return model;
  }

  /** Channel 0 of the model's first output (side × side values) and the time the run took. */
  async run(model: LoadedModel, input: Float32Array): Promise<{ output: Float32Array; side: number; ms: number }> {
    const reply = await this.call({ type: 'run', model: model.spec.name, input, size: model.size }, [input.buffer as ArrayBuffer]);
    if (!('output' in reply)) throw new Error('inference thread answered a run without output');
    return { output: reply.output, side: reply.outputSize, ms: reply.ms };
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
    this.fail(new Error('inference thread closed'));
  }

  private call(request: WithoutId<InferenceRequest>, transfer: ArrayBuffer[] = []): Promise<InferenceReply> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<InferenceReply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...request, id } as InferenceRequest, transfer);
    }).then((reply) => {
      if (!reply.ok) throw new Error(reply.message);
      return reply;
    });
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const entry of this.pending.values()) entry.reject(error);
    this.pending.clear();
  }
}
