-- Pipelines, payloads and jobs. Times are unix seconds (REAL); JSON columns hold small documents.

CREATE TABLE pipelines (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    files       TEXT NOT NULL,            -- JSON [[path, content], ...]; the first is the pipeline document
    metadata    TEXT NOT NULL DEFAULT '{}',
    created     REAL NOT NULL,
    updated     REAL NOT NULL
);

CREATE TABLE payloads (
    id          TEXT PRIMARY KEY,
    type        INTEGER NOT NULL,         -- wire PayloadType: 1 pipeline (a job's), 2 reusable
    job_id      TEXT,
    read_only   INTEGER NOT NULL DEFAULT 0,
    metadata    TEXT NOT NULL DEFAULT '{}',
    created     REAL NOT NULL
);

CREATE TABLE jobs (
    id          TEXT PRIMARY KEY,
    pipeline_id TEXT NOT NULL,
    payload_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    priority    INTEGER NOT NULL,         -- wire JobPriority
    state       INTEGER NOT NULL,         -- wire JobState
    status      INTEGER NOT NULL,         -- wire JobStatus
    files       TEXT NOT NULL,            -- the pipeline definition as it was at Create
    variables   TEXT NOT NULL DEFAULT '{}',
    metadata    TEXT NOT NULL DEFAULT '{}',
    messages    TEXT NOT NULL DEFAULT '[]',
    timeout     REAL,
    created     REAL NOT NULL,
    started     REAL,
    stopped     REAL
);
CREATE INDEX jobs_by_pipeline ON jobs (pipeline_id);
CREATE INDEX jobs_by_state ON jobs (state);

CREATE TABLE operators (
    job_id      TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    position    INTEGER NOT NULL,         -- declaration order in the pipeline
    status      INTEGER NOT NULL,         -- wire JobOperatorStatus
    upstream    TEXT NOT NULL DEFAULT '[]',
    created     REAL NOT NULL,
    started     REAL,
    stopped     REAL,
    exit_code   INTEGER,
    runtime_id  TEXT,                     -- container id or sandbox process, to find it again after a restart
    gpu_ids     TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (job_id, name)
);
