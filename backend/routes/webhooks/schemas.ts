import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { withErrors } from '../../schemas/common.js';
import { EventTypeSchema } from '../image-queue/events-schemas.js';

/** /api/webhooks: a vendor's webhook URL and secret, and the log of deliveries. */
const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
const security = [{ bearerAuth: [] }];

export const WebhookSettingsBody = Type.Object(
  {
    webhookUrl: Type.String({
      minLength: 1,
      maxLength: 2048,
      description: 'https URL that receives a POST for each completed, failed or dead job and finished batch',
    }),
  },
  { additionalProperties: false },
);

export const WebhookSettings = Type.Object({
  webhookUrl: Nullable(Type.String()),
  hasSecret: Type.Boolean(),
  signatureHeader: Type.String({ description: 'the header that carries the signature' }),
});
export type WebhookSettings = Static<typeof WebhookSettings>;

export const WebhookSecretResponse = Type.Object({
  webhookUrl: Type.String(),
  secret: Type.String({ description: 'shown once: sign-checking key (HMAC-SHA256); setting the URL again makes a new one' }),
  signatureHeader: Type.String(),
});
export type WebhookSecretResponse = Static<typeof WebhookSecretResponse>;

export const WebhookDeliveryView = Type.Object({
  id: Type.String(),
  eventId: Type.Integer({ description: 'the event number (as on the event stream)' }),
  eventType: EventTypeSchema,
  url: Type.String(),
  attempt: Type.Integer({ minimum: 1 }),
  outcome: Type.Unsafe<'delivered' | 'failed'>({ type: 'string', enum: ['delivered', 'failed'] }),
  statusCode: Nullable(Type.Integer()),
  error: Nullable(Type.String()),
  durationMs: Type.Integer(),
  nextRetryAt: Nullable(Type.String({ format: 'date-time', description: 'when the next try is due; null when delivered or out of tries' })),
  createdAt: Type.String({ format: 'date-time' }),
});
export type WebhookDeliveryView = Static<typeof WebhookDeliveryView>;

export const DeliveriesQuery = Type.Object(
  {
    cursor: Type.Optional(Type.String({ maxLength: 64, description: 'nextCursor of the previous page' })),
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
  },
  { additionalProperties: false },
);

export const DeliveriesResponse = Type.Object({
  deliveries: Type.Array(WebhookDeliveryView),
  nextCursor: Nullable(Type.String()),
});
export type DeliveriesResponse = Static<typeof DeliveriesResponse>;

export const getWebhookSchema = {
  tags: ['webhooks'],
  operationId: 'getWebhook',
  summary: 'Your webhook URL (the secret is never shown again)',
  security,
  response: withErrors({ 200: WebhookSettings }, 429),
};

export const putWebhookSchema = {
  tags: ['webhooks'],
  operationId: 'setWebhook',
  summary: 'Set your webhook URL; answers with a new signing secret',
  security,
  body: WebhookSettingsBody,
  response: withErrors({ 200: WebhookSecretResponse }, 429),
};

export const deleteWebhookSchema = {
  tags: ['webhooks'],
  operationId: 'deleteWebhook',
  summary: 'Stop webhooks (pending retries are dropped)',
  security,
  response: withErrors({ 204: Type.Null() }, 429),
};

export const deliveriesSchema = {
  tags: ['webhooks'],
  operationId: 'listWebhookDeliveries',
  summary: 'Your webhook delivery attempts, newest first',
  security,
  querystring: DeliveriesQuery,
  response: withErrors({ 200: DeliveriesResponse }, 429),
};
