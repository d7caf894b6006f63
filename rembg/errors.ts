/** An error the HTTP layer answers with `status` and `{ detail }`. */
export class RembgError extends Error {
  constructor(
    readonly status: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RembgError';
  }
}
