import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { View } from '../../plugins/job-status.js';

/**
 * Conditional status reads (RFC 9110): every job, batch and list response
 * carries a strong ETag, a hash of its body, and a request whose
 * If-None-Match names it is answered 304 without a body. A cached view is
 * serialized (by the route's response schema) and hashed once, however many
 * pollers read it.
 */
export type Serialize = (payload: unknown) => string;

/** The body and ETag of a view, made on first use and kept on it. */
export function rendered(view: View<unknown>, serialize: Serialize): { body: Buffer; etag: string } {
  return (view.rendered ??= render(serialize(view.view)));
}

export function render(json: string): { body: Buffer; etag: string } {
  const body = Buffer.from(json);
  return { body, etag: `"${createHash('sha1').update(body).digest('base64url').slice(0, 22)}"` };
}

/** The route's compiled serializer for its 200 response. */
export function serializerOf(reply: FastifyReply): Serialize {
  return reply.getSerializationFunction('200') as Serialize;
}

/** Sends a rendered body with its ETag, or 304 when the caller already has it. */
export function sendRendered(request: FastifyRequest, reply: FastifyReply, out: { body: Buffer; etag: string }, status = 200): FastifyReply {
  reply.header('etag', out.etag).header('cache-control', 'private, no-cache');
  if (status === 200 && noneMatch(request.headers['if-none-match'], out.etag)) return reply.code(304).send();
  return reply.code(status).type('application/json; charset=utf-8').send(out.body);
}

/** True when If-None-Match lists this ETag (weak comparison, as RFC 9110 asks for GET) or is `*`. */
export function noneMatch(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  const bare = etag.replace(/^W\//, '');
  return header.split(',').some((candidate) => candidate.trim().replace(/^W\//, '') === bare);
}

/** The one ETag a long-poll waits to see change: the first If-None-Match entry, or null. */
export function heldEtag(header: string | undefined): string | null {
  const first = header?.split(',')[0]?.trim().replace(/^W\//, '');
  return first && first !== '*' ? first : null;
}
