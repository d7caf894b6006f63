import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

/**
 * Retention (issue 21): how long each kind of a vendor's data is kept.
 * A plan gives the periods (RETENTION_STANDARD, RETENTION_UNLIMITED); an
 * admin may override any of them for one vendor (`vendors.retention`, JSON).
 * Pure: the worker's retention sweeper, the admin API, the usage route and
 * the vendor CLI read the same rules.
 *
 *   jobs               finished jobs (completed, failed, dead, cancelled), counted from
 *                      their end: ledger row, attempts, results, record, faces, stored outputs
 *   uploads            the uploaded source photo of a finished job (never longer than jobs)
 *   deadLetters        a dead job's entry in the dead-letter list (never longer than jobs)
 *   events             the job event log (stream resume, webhook bodies)
 *   webhookDeliveries  the webhook delivery log
 *
 * Periods are written as a number and a unit: `90s`, `15m`, `12h`, `30d`.
 */
export const RETENTION_KINDS = ['jobs', 'uploads', 'deadLetters', 'events', 'webhookDeliveries'] as const;
export type RetentionKind = (typeof RETENTION_KINDS)[number];

export const DURATION_PATTERN = '^[1-9][0-9]{0,5}[smhd]$';
const PERIOD = `(?:${RETENTION_KINDS.join('|')})=[1-9][0-9]{0,5}[smhd]`;
/** A plan's periods as one variable: `jobs=30d,uploads=7d`; a kind left out keeps the built-in default. */
export const PLAN_RETENTION_PATTERN = `^(?:${PERIOD}(?:,${PERIOD})*)?$`;

const Duration = Type.String({ pattern: DURATION_PATTERN, description: 'a period: a number and s, m, h or d (90s, 12h, 30d)' });

export const RetentionOverrides = Type.Object(
  {
    jobs: Type.Optional(Duration),
    uploads: Type.Optional(Duration),
    deadLetters: Type.Optional(Duration),
    events: Type.Optional(Duration),
    webhookDeliveries: Type.Optional(Duration),
  },
  { additionalProperties: false, description: "per-vendor overrides of the plan's retention periods; a kind left out keeps the plan's period" },
);
export type RetentionOverrides = Static<typeof RetentionOverrides>;

export const RetentionPeriods = Type.Object(
  {
    jobs: Duration,
    uploads: Duration,
    deadLetters: Duration,
    events: Duration,
    webhookDeliveries: Duration,
  },
  { description: 'the retention periods in force: plan defaults with the overrides applied' },
);
export type RetentionPeriods = Static<typeof RetentionPeriods>;

/** Built-in periods of each plan, for kinds the plan's variable leaves out. */
export const DEFAULT_RETENTION: Record<'standard' | 'unlimited', RetentionPeriods> = {
  standard: { jobs: '30d', uploads: '7d', deadLetters: '30d', events: '7d', webhookDeliveries: '7d' },
  unlimited: { jobs: '365d', uploads: '30d', deadLetters: '90d', events: '30d', webhookDeliveries: '30d' },
};

export interface RetentionConfig {
  RETENTION_STANDARD: string;
  RETENTION_UNLIMITED: string;
}

const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

export function durationMs(duration: string): number {
  const match = /^([1-9][0-9]{0,5})([smhd])$/.exec(duration);
  if (!match) throw new Error(`not a period: ${duration}`);
  return Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
}

/** `jobs=30d,uploads=7d` as overrides; throws on anything else (the config pattern refuses it first). */
export function parsePlanRetention(value: string): RetentionOverrides {
  if (!new RegExp(PLAN_RETENTION_PATTERN).test(value)) throw new Error(`not a list of kind=period: ${value}`);
  const periods: Record<string, string> = {};
  for (const part of value.split(',').filter(Boolean)) {
    const [kind, period] = part.split('=') as [string, string];
    periods[kind] = period;
  }
  return periods as RetentionOverrides;
}

export function planRetention(config: RetentionConfig, plan: string): RetentionPeriods {
  const unlimited = plan === 'unlimited';
  const base = DEFAULT_RETENTION[unlimited ? 'unlimited' : 'standard'];
  return { ...base, ...parsePlanRetention(unlimited ? config.RETENTION_UNLIMITED : config.RETENTION_STANDARD) };
}

/** Overrides as stored (a JSON string or parsed); anything that does not match the schema is ignored rather than trusted. */
export function parseRetentionOverrides(stored: unknown): RetentionOverrides {
  let value = stored;
  if (typeof stored === 'string') {
    try {
      value = JSON.parse(stored) as unknown;
    } catch {
      return {};
    }
  }
  return Value.Check(RetentionOverrides, value) ? value : {};
}

/**
 * The periods in force for a vendor. Uploads and dead letters never outlive
 * their job: their period is cut to the jobs period.
 */
export function effectiveRetention(config: RetentionConfig, vendor: { plan: string; retention: unknown }): RetentionPeriods {
  const periods = { ...planRetention(config, vendor.plan), ...parseRetentionOverrides(vendor.retention) };
  for (const kind of ['uploads', 'deadLetters'] as const) {
    if (durationMs(periods[kind]) > durationMs(periods.jobs)) periods[kind] = periods.jobs;
  }
  return periods;
}

export function retentionMs(periods: RetentionPeriods): Record<RetentionKind, number> {
  return Object.fromEntries(RETENTION_KINDS.map((k) => [k, durationMs(periods[k])])) as Record<RetentionKind, number>;
}
