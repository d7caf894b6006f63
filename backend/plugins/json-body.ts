import fp from 'fastify-plugin';
import { AppError } from '../../jobs/errors.js';

/**
 * JSON bodies are parsed by Fastify's own parser (prototype-poisoning
 * checks included) and then refused if nested deeper than any request of
 * this API can be. Code that walks a body recursively (the Idempotency-Key
 * fingerprint, schema validation of routes that take no body) would
 * otherwise overflow the stack on `[[[[…]]]]` and answer 500.
 */
export const MAX_JSON_DEPTH = 32;

export default fp(
  async (app) => {
    const parse = app.getDefaultJsonParser('error', 'error');
    app.removeContentTypeParser('application/json');
    app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
      parse(request, body as string, (error, value) => {
        if (error) return done(error);
        if (depthOf(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
          return done(new AppError('BAD_REQUEST', `the JSON body is nested more than ${MAX_JSON_DEPTH} levels deep`), undefined);
        }
        done(null, value);
      });
    });
  },
  { name: 'json-body', dependencies: ['errors'] },
);

/** Nesting depth of a parsed JSON value, without recursion; stops counting past `limit`. */
export function depthOf(value: unknown, limit: number): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop() as [unknown, number];
    if (item === null || typeof item !== 'object') continue;
    deepest = Math.max(deepest, depth + 1);
    if (deepest > limit) return deepest;
    for (const child of Array.isArray(item) ? item : Object.values(item)) if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
  }
  return deepest;
}
