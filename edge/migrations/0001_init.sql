-- Tenants, their API keys (only SHA-256 hashes), files, jobs and their events, adapters.
-- Every table that holds tenant data carries tenant_id, and every query filters on it.

CREATE TABLE tenants (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  limits TEXT NOT NULL DEFAULT '{}', -- JSON overrides of DEFAULT_LIMITS
  created_at INTEGER NOT NULL
);

CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  key_hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  name TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id);

CREATE TABLE files (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  filename TEXT NOT NULL,
  purpose TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  format TEXT NOT NULL,
  line_count INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  r2_key TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX files_tenant ON files(tenant_id, id);

CREATE TABLE jobs (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  model TEXT NOT NULL,
  training_file TEXT NOT NULL,
  validation_file TEXT,
  method TEXT NOT NULL, -- JSON TrainingMethod
  suffix TEXT,
  seed INTEGER NOT NULL,
  metadata TEXT, -- JSON
  status TEXT NOT NULL,
  attempt INTEGER NOT NULL DEFAULT 1,
  worker_id TEXT,
  error TEXT, -- JSON { code, message, param }
  fine_tuned_model TEXT,
  trained_tokens INTEGER,
  idempotency_key TEXT,
  request_hash TEXT,
  created_at INTEGER NOT NULL,
  started_at INTEGER,
  finished_at INTEGER,
  UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX jobs_tenant ON jobs(tenant_id, id);

CREATE TABLE job_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE, -- the worker's event_id (or an edge-made one): duplicates are ignored
  job_id TEXT NOT NULL REFERENCES jobs(id),
  tenant_id TEXT NOT NULL,
  type TEXT NOT NULL,
  level TEXT NOT NULL,
  message TEXT NOT NULL,
  data TEXT, -- JSON
  created_at INTEGER NOT NULL
);
CREATE INDEX job_events_job ON job_events(job_id, seq);

CREATE TABLE checkpoints (
  id TEXT PRIMARY KEY,
  job_id TEXT NOT NULL REFERENCES jobs(id),
  tenant_id TEXT NOT NULL,
  step INTEGER NOT NULL,
  metrics TEXT NOT NULL, -- JSON
  created_at INTEGER NOT NULL
);
CREATE INDEX checkpoints_job ON checkpoints(job_id, step);

CREATE TABLE adapters (
  id TEXT NOT NULL, -- the manifest's adapter_id
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  model_id TEXT NOT NULL, -- ft:<backbone>:<suffix>:<id>
  backbone TEXT NOT NULL,
  job_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  manifest TEXT NOT NULL, -- JSON AdapterManifest
  created_at INTEGER NOT NULL,
  deleted_at INTEGER,
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, model_id)
);
CREATE INDEX adapters_tenant ON adapters(tenant_id, deleted_at);
