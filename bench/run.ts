/**
 * `npm run bench -- <name> [args]` runs one benchmark; `npm run bench` lists
 * them. Each writes its section of bench/RESULTS.md. Run them on a quiet
 * machine: they measure this machine, not the code alone.
 */
const BENCHMARKS: Record<string, { file: string; what: string }> = {
  'worker-throughput': { file: 'worker-throughput.ts', what: 'no-op jobs through the full ledger path vs raw Bull, same run' },
  'worker-memory': { file: 'worker-memory.ts', what: 'worker process RSS over many real processing jobs (≤ 10 % growth after warm-up)' },
  'face-crop': { file: 'face-crop.ts', what: 'passport crops per minute end to end through the API; face detection latency per detector' },
  processing: { file: 'processing.ts', what: 'seed-001 load table: mixed processing jobs through API + worker vs a bare sharp loop' },
  chaos: { file: 'chaos.ts', what: 'reliability table: worker SIGKILL, Redis flush/restart, MySQL stop, storage 500s at scale; long route fuzzing' },
  'rembg-service': { file: 'rembg-service.ts', what: 'rembg service images/min vs raw onnxruntime inference, same run; service RSS over 1,000 images' },
  'rembg-latency': {
    file: 'rembg-latency.ts',
    what: 'one rembg instance: latency per fixture photo and /health during a 49 Mpx photo, optionally vs an earlier checkout (--before)',
  },
  removebg: {
    file: 'removebg.ts',
    what: 'POST /v1.0/removebg images/min vs the async route in the same run (≥ 0.95×); its added latency over the job (p50 ≤ 50 ms)',
  },
  'rembg-e2e': { file: 'rembg-e2e.ts', what: 'background-removal jobs/min end to end through the API with 2 rembg instances (target ≥ 150/min)' },
  status: { file: 'status.ts', what: 'status reads: job/:id vs /healthz req/s, 304s, jobs/s under 200 pollers and long-pollers, 1,000 open long-polls' },
  hostile: { file: 'hostile.ts', what: 'worker RSS peak and normal jobs p95 with 20 hostile pipelines mixed into 200 normal jobs, vs the 200 alone' },
  enqueue: { file: 'enqueue.ts', what: 'enqueue req/s and p99 vs a bare and a minimal durable route; bulk 100/1000 latency' },
};

const [name, ...rest] = process.argv.slice(2);
if (!name || !BENCHMARKS[name]) {
  console.log('usage: npm run bench -- <name> [args]\n');
  for (const [key, b] of Object.entries(BENCHMARKS)) console.log(`  ${key.padEnd(18)} ${b.what}`);
  process.exit(name ? 1 : 0);
}
process.argv = [process.argv[0] as string, BENCHMARKS[name].file, ...rest];
await import(`./${BENCHMARKS[name].file}`);
