/**
 * The URL a worker thread is started from for the module beside this one
 * named `name` (without extension). Run from TypeScript sources, the thread
 * registers tsx's loader itself before importing its module: `tsx file.ts`
 * leaves no flag a thread inherits.
 */
export function threadEntry(name: string): URL {
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  const url = new URL(`./${name}.${ext}`, import.meta.url);
  if (ext === 'js') return url;
  return new URL(
    `data:text/javascript,${encodeURIComponent(
      `const { register } = await import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}); register(); await import(${JSON.stringify(url.href)});`,
    )}`,
  );
}
