-- The replay set of workers' signed callbacks (store/signatures.ts): each signature is accepted
-- once while its timestamp is inside the window, and pruned after.

CREATE TABLE seen_signatures (
  signature TEXT PRIMARY KEY,
  expires_at INTEGER NOT NULL -- unix seconds
);
CREATE INDEX seen_signatures_expiry ON seen_signatures(expires_at);
