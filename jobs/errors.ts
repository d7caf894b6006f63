/**
 * Every error a client or an operator can see carries one of these codes.
 * The table says how the API answers it and whether a worker attempt that
 * failed with it is worth retrying. Pure data: no I/O.
 */
export const ERROR_CODES = {
  // request errors (API)
  BAD_REQUEST: { status: 400, retryable: false },
  UNAUTHORIZED: { status: 401, retryable: false },
  FORBIDDEN: { status: 403, retryable: false },
  NOT_FOUND: { status: 404, retryable: false },
  CONFLICT: { status: 409, retryable: false },
  PAYLOAD_TOO_LARGE: { status: 413, retryable: false },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, retryable: false },
  IDEMPOTENCY_MISMATCH: { status: 422, retryable: false },
  RATE_LIMITED: { status: 429, retryable: true },
  SERVICE_UNAVAILABLE: { status: 503, retryable: true },
  INTERNAL: { status: 500, retryable: true },

  // source fetching
  SOURCE_URL_INVALID: { status: 400, retryable: false },
  SOURCE_URL_FORBIDDEN: { status: 400, retryable: false },
  SOURCE_FETCH_FAILED: { status: 502, retryable: true },
  SOURCE_NOT_FOUND: { status: 422, retryable: false },
  SOURCE_TOO_LARGE: { status: 413, retryable: false },
  SOURCE_TIMEOUT: { status: 504, retryable: true },

  // image content
  BAD_IMAGE: { status: 422, retryable: false },
  UNSUPPORTED_FORMAT: { status: 415, retryable: false },
  TOO_MANY_PIXELS: { status: 413, retryable: false },
  /** a pipeline step would make an image over MAX_OUTPUT_PIXELS (jobs/pixel-budget.ts) */
  OUTPUT_TOO_LARGE: { status: 400, retryable: false },
  /** a pipeline's stored images would hold more than MAX_JOB_ENCODED_PIXELS together */
  JOB_TOO_LARGE: { status: 400, retryable: false },

  // face crop
  NO_FACE: { status: 422, retryable: false },
  MULTIPLE_FACES: { status: 422, retryable: false },
  FACE_TOO_SMALL: { status: 422, retryable: false },
  /** face tagging is opt-in per vendor (vendors.face_tagging; admin PATCH faceTagging) and this vendor has it off */
  FACE_TAGGING_OFF: { status: 403, retryable: false },

  // background removal
  /** crop, scale or position needs a subject, and the cut-out has none */
  NO_FOREGROUND: { status: 422, retryable: false },

  // downstream services
  REMBG_UNAVAILABLE: { status: 503, retryable: true },
  REMBG_FAILED: { status: 502, retryable: true },
  STORAGE_FAILED: { status: 502, retryable: true },
  DATABASE_UNAVAILABLE: { status: 503, retryable: true },
  RESULT_TOO_LARGE: { status: 500, retryable: false },
  JOB_TIMEOUT: { status: 504, retryable: true },
  WORKER_SHUTDOWN: { status: 503, retryable: true },
  /** the worker running the job died mid-attempt more often than Bull's stalled limit allows */
  JOB_STALLED: { status: 500, retryable: true },
  /** the vendor cancelled the job (POST …/job/:id/cancel) or deleted it */
  JOB_CANCELLED: { status: 409, retryable: false },
  /** the job's Bull payload did not match its kind's schema when it started (jobs/kinds.ts, payloadSchema): it cannot succeed on retry */
  INVALID_PAYLOAD: { status: 500, retryable: false },
} as const satisfies Record<string, { status: number; retryable: boolean }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** An error that knows its code; everything else is INTERNAL. */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown>; retryable?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.statusCode = ERROR_CODES[code].status;
    this.retryable = options?.retryable ?? ERROR_CODES[code].retryable;
    this.details = options?.details;
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
}

/** One invalid field of a request, as a 400 lists them. */
export interface FieldProblem {
  path: string;
  message: string;
}

/**
 * What a vendor reads about a failed attempt (the ledger's error_message,
 * the job's status, its events and webhooks). Errors about our own side
 * (database, storage, rembg, a bug) get a fixed sentence: their messages come
 * from drivers and name internal hosts, URLs and addresses, which the
 * worker's log keeps with the job id. Other messages are our own words about
 * the vendor's request; any URL or IPv4 address that slipped into one is
 * masked all the same, and a stack never passes (only the first line).
 * SOURCE_* messages keep theirs: they name the vendor's own URL's problem
 * and never a resolved address (platform/address-guard.ts).
 */
export function publicMessage(error: AppError): string {
  const fixed = OUR_SIDE[error.code];
  if (fixed) return fixed;
  const firstLine = (error.message.split('\n')[0] ?? '').slice(0, 500);
  if (error.code.startsWith('SOURCE_')) return firstLine;
  return firstLine.replace(URL_PATTERN, '(an internal address)').replace(IPV4_PATTERN, '(an internal address)');
}

const OUR_SIDE: Partial<Record<ErrorCode, string>> = {
  INTERNAL: 'the worker hit an unexpected error; the operators have the details under this job id',
  DATABASE_UNAVAILABLE: 'the job database was unavailable; the job is tried again',
  STORAGE_FAILED: 'storing the result failed (result storage is unavailable); the job is tried again',
  REMBG_UNAVAILABLE: 'no background-removal instance could take the job just now; it is tried again',
  SERVICE_UNAVAILABLE: 'a service this job needs is not available on the worker',
};

const URL_PATTERN = /\b[a-z][a-z0-9+.-]*:\/\/[^\s,;)]+/gi;
const IPV4_PATTERN = /\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b/g;
