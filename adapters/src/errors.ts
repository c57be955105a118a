/**
 * Every failure of the adapter layer is an AdapterError with a stable `code`, so callers (the
 * worker's HTTP layer, the cache) branch on codes, not on message text. Messages name the key,
 * file or field that was wrong.
 */
export type AdapterErrorCode =
  | 'invalid_argument'
  | 'not_found'
  | 'already_exists'
  | 'integrity'
  | 'backbone_mismatch'
  | 'unavailable'
  | 'cache_full';

export class AdapterError extends Error {
  override name = 'AdapterError';
  constructor(
    readonly code: AdapterErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** An id, name, cursor or option that would not make a safe key or a valid object. */
export class InvalidArgumentError extends AdapterError {
  override name = 'InvalidArgumentError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('invalid_argument', message, options);
  }
}

export class NotFoundError extends AdapterError {
  override name = 'NotFoundError';
  constructor(message: string) {
    super('not_found', message);
  }
}

/** A create-only write found the key taken by different content (versions are immutable). */
export class AlreadyExistsError extends AdapterError {
  override name = 'AlreadyExistsError';
  constructor(message: string) {
    super('already_exists', message);
  }
}

/** Stored bytes that do not match what their manifest or record promises: never served. */
export class IntegrityError extends AdapterError {
  override name = 'IntegrityError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('integrity', message, options);
  }
}

export class BackboneMismatchError extends AdapterError {
  override name = 'BackboneMismatchError';
  constructor(message: string) {
    super('backbone_mismatch', message);
  }
}

/** The backing store failed and retries ran out; the operation may be retried later. */
export class StoreUnavailableError extends AdapterError {
  override name = 'StoreUnavailableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('unavailable', message, options);
  }
}

/** Pinned adapters fill the byte budget; retry once requests release them. */
export class CacheFullError extends AdapterError {
  override name = 'CacheFullError';
  constructor(message: string) {
    super('cache_full', message);
  }
}

export function isAdapterError(e: unknown, code?: AdapterErrorCode): e is AdapterError {
  return e instanceof AdapterError && (code === undefined || e.code === code);
}
