import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely';
import type { JobKind, JobState } from '../jobs/queues.js';

/**
 * The database as Kysely sees it. MySQL is the source of truth: vendors and
 * their keys, the job ledger, batches and the records vendors attach photos to.
 */
export interface Database {
  vendors: VendorsTable;
  batches: BatchesTable;
  jobs: JobsTable;
  job_attempts: JobAttemptsTable;
  job_result_fields: ResultFieldsTable<'job_id', string>;
  data_records: DataRecordsTable;
  record_fields: ResultFieldsTable<'record_pk', number>;
  dead_letters: DeadLettersTable;
  persons: PersonsTable;
  faces: FacesTable;
  idempotency_keys: IdempotencyKeysTable;
  event_seqs: EventSeqsTable;
  job_events: JobEventsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  storage_garbage: StorageGarbageTable;
}

type CreatedAt = ColumnType<Date, Date | string | undefined, never>;
type UpdatedAt = ColumnType<Date, Date | string | undefined, Date | string>;

export type VendorRole = 'vendor' | 'admin';

export interface VendorsTable {
  id: string;
  name: string;
  plan: string;
  role: VendorRole;
  /** sha256 of the API key (keys are 256-bit random, so a fast hash is enough) */
  api_key_hash: string;
  /** first characters of the key, to tell keys apart in admin listings */
  api_key_prefix: string;
  webhook_url: string | null;
  webhook_secret: string | null;
  /** JSON: per-tier limit overrides set by an admin */
  rate_limits: string | null;
  /** JSON: per-vendor retention overrides set by an admin (backend/plans.ts) */
  retention: ColumnType<string | null, string | null | undefined, string | null>;
  /** face tagging is opt-in: 1 once the vendor turned it on */
  face_tagging: Generated<number>;
  /** JSON list of exact web origins allowed to call the API with this vendor's tokens (CORS); null: CORS_ORIGINS */
  cors_origins: ColumnType<string | null, string | null | undefined, string | null>;
  /** tokens carry it; rotating the key or deleting the vendor adds one, which revokes every token minted before */
  token_version: Generated<number>;
  created_at: CreatedAt;
  deleted_at: Date | null;
}

export interface BatchesTable {
  id: string;
  vendor_id: string;
  kind: JobKind;
  project_id: string;
  total: number;
  /** jobs of the batch that ended (completed, failed or dead) */
  jobs_finished: Generated<number>;
  created_at: CreatedAt;
  finished_at: Date | null;
}

export interface JobsTable {
  id: string;
  vendor_id: string;
  batch_id: string | null;
  /** position in its batch (request order); null for single jobs */
  batch_seq: ColumnType<number | null, number | null | undefined, number | null>;
  kind: JobKind;
  project_id: string;
  record_id: string;
  source_url: string | null;
  source_key: string | null;
  /** 1 while the job holds an upload (virtual: source_key IS NOT NULL; migration 0017) */
  has_upload: ColumnType<number, never, never>;
  /** JSON: the job options as validated by the API */
  options: string;
  output_prefix: string;
  status: JobState;
  progress: Generated<number>;
  attempts: Generated<number>;
  max_attempts: number;
  priority: Generated<number>;
  error_code: string | null;
  error_message: string | null;
  created_at: CreatedAt;
  started_at: Date | null;
  finished_at: Date | null;
  updated_at: UpdatedAt;
  duration_ms: number | null;
  /** runs of this job that ended with their worker dying under them (poison suspects run alone) */
  stalls: Generated<number>;
}

export interface JobAttemptsTable {
  job_id: string;
  attempt: number;
  worker_id: string;
  started_at: Date;
  finished_at: Date | null;
  outcome: 'running' | 'completed' | 'failed';
  error_code: string | null;
  error_message: string | null;
}

/** Dead jobs an operator has not retried or purged yet (the dead-letter queue). */
export interface DeadLettersTable {
  job_id: string;
  vendor_id: string;
  queue: string;
  dead_at: UpdatedAt;
}

export type ResultFieldsTable<K extends string, V> = {
  [key in K]: V;
} & {
  field: string;
  /** JSON-encoded value of one top-level result field */
  value: string;
};

export type RecordStatus = 'pending' | 'queued' | 'processing' | 'completed' | 'failed';

export interface DataRecordsTable {
  id: Generated<number>;
  vendor_id: string;
  project_id: string;
  record_id: string;
  photo_url: string | null;
  processing_status: RecordStatus;
  processed_photo_url: string | null;
  result_width: number | null;
  result_height: number | null;
  last_job_id: string | null;
  error_code: string | null;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
}

/** A person a vendor's faces were grouped into (face tagging). */
export interface PersonsTable {
  id: string;
  vendor_id: string;
  /** a name the vendor gave the person */
  name: ColumnType<string | null, string | null | undefined, string | null>;
  face_count: number;
  /** sum of the member faces' descriptors: 128 float64, little-endian */
  descriptor_sum: Buffer;
  /** the mean descriptor projected on a fixed direction (db/repos/faces.ts personSketch), indexed to find candidates */
  sketch: ColumnType<number, number | undefined, number>;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
}

/** One face found in a vendor's photo by a tagging job. */
export interface FacesTable {
  id: string;
  vendor_id: string;
  person_id: string;
  job_id: string;
  project_id: string;
  record_id: string;
  /** position of the face in the job's detection order */
  face_index: number;
  /** size of the image the box refers to */
  image_width: number;
  image_height: number;
  box_x: number;
  box_y: number;
  box_width: number;
  box_height: number;
  score: number;
  /** distance to the person's mean when the face joined it; null when it founded the person */
  distance: number | null;
  /** 128 float32, little-endian */
  descriptor: Buffer;
  created_at: CreatedAt;
}

/** A remembered Idempotency-Key and the response first given for it. */
export interface IdempotencyKeysTable {
  vendor_id: string;
  idem_key: string;
  /** sha256 of method, route and body: the same key with another body is refused */
  fingerprint: string;
  route: string;
  status_code: number;
  /** JSON of the response body */
  response: string;
  created_at: CreatedAt;
}

/** Per vendor, the last event sequence number handed out (see migration 0010). */
export interface EventSeqsTable {
  vendor_id: string;
  seq: number;
}

export type EventType = 'queued' | 'active' | 'completed' | 'failed' | 'dead' | 'cancelled' | 'batch.finished';

/** The ledger's event log: one row per job state change or batch end, per vendor in commit order. */
export interface JobEventsTable {
  vendor_id: string;
  seq: number;
  type: EventType;
  job_id: string | null;
  batch_id: string | null;
  kind: JobKind;
  error_code: string | null;
  error_message: string | null;
  /** a final event whose webhook delivery has not been queued yet */
  webhook_pending: Generated<number>;
  created_at: CreatedAt;
}

/** One attempt to deliver one webhook event. */
export interface WebhookDeliveriesTable {
  id: string;
  vendor_id: string;
  event_seq: number;
  event_type: EventType;
  url: string;
  attempt: number;
  outcome: 'delivered' | 'failed';
  status_code: number | null;
  error: string | null;
  duration_ms: number;
  next_retry_at: Date | null;
  created_at: CreatedAt;
}

/** Stored files whose rows are gone, waiting to be removed from storage (migration 0013). */
export interface StorageGarbageTable {
  id: Generated<number>;
  vendor_id: string;
  /** a storage key, or a key prefix (a job's outputs) when is_prefix = 1 */
  target: string;
  is_prefix: number;
  not_before: ColumnType<Date, Date | string | undefined, Date | string>;
  tries: Generated<number>;
  last_error: string | null;
  created_at: CreatedAt;
}

export type JobEventRow = Selectable<JobEventsTable>;
export type WebhookDelivery = Selectable<WebhookDeliveriesTable>;
export type Vendor = Selectable<VendorsTable>;
export type NewVendor = Insertable<VendorsTable>;
export type Job = Selectable<JobsTable>;
export type NewJob = Insertable<JobsTable>;
export type JobUpdate = Updateable<JobsTable>;
export type Batch = Selectable<BatchesTable>;
export type DataRecord = Selectable<DataRecordsTable>;
export type Person = Selectable<PersonsTable>;
export type Face = Selectable<FacesTable>;
export type NewBatch = Insertable<BatchesTable>;
export type IdempotencyKey = Selectable<IdempotencyKeysTable>;
export type NewIdempotencyKey = Insertable<IdempotencyKeysTable>;
