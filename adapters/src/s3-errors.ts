/** How the S3 client reports the answers the store branches on (names vary by server). */
function status(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

export function isNotFound(e: unknown): boolean {
  const name = (e as { name?: string } | undefined)?.name;
  return name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchUpload' || status(e) === 404;
}

export function isPreconditionFailed(e: unknown): boolean {
  const name = (e as { name?: string } | undefined)?.name;
  return name === 'PreconditionFailed' || status(e) === 412;
}
