-- Jobs replicas: who runs each job, the queue of ready operators they share, and the resource ledger.

ALTER TABLE jobs ADD COLUMN owner TEXT;            -- the jobs replica that runs the started job
ALTER TABLE jobs ADD COLUMN cancel_request TEXT;   -- a Cancel that reached another replica; the owner ends the job
CREATE INDEX jobs_in_flight_by_owner ON jobs (owner) WHERE stopped IS NULL;

CREATE TABLE replicas (
    id          TEXT PRIMARY KEY,
    node        TEXT NOT NULL,                     -- whose resources it grants and runs operators on
    heartbeat   REAL NOT NULL,                     -- a replica silent for CLARET_TAKEOVER_AFTER s is taken over
    started     REAL NOT NULL
);

CREATE TABLE queue (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,  -- submission order: FIFO within a class
    job_id      TEXT NOT NULL,
    operator    TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    cpu         INTEGER NOT NULL,
    memory_mb   INTEGER NOT NULL,
    gpus        INTEGER NOT NULL,
    since       REAL NOT NULL,                      -- when it became ready (ageing)
    UNIQUE (job_id, operator)
);

CREATE TABLE ledger (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    node        TEXT NOT NULL,                      -- whose cpus, memory and GPUs the grant takes
    job_id      TEXT NOT NULL,
    operator    TEXT NOT NULL,
    owner       TEXT NOT NULL,                      -- the replica that runs the operator
    cpu         INTEGER NOT NULL,
    memory_mb   INTEGER NOT NULL,
    gpu_ids     TEXT NOT NULL,                      -- JSON list, in grant order
    granted     REAL NOT NULL,
    picked      INTEGER NOT NULL DEFAULT 0,         -- its owner has taken the grant to start the operator
    released    REAL                                -- NULL while held; the rows stay as the ledger's history
);
CREATE INDEX ledger_held ON ledger (node) WHERE released IS NULL;
CREATE UNIQUE INDEX ledger_one_holder ON ledger (job_id, operator) WHERE released IS NULL;

-- One row per GPU held: the primary key makes granting a GPU twice impossible, whatever the code does.
CREATE TABLE gpu_holds (
    node        TEXT NOT NULL,
    gpu_id      TEXT NOT NULL,
    ledger_id   INTEGER NOT NULL REFERENCES ledger (id),
    PRIMARY KEY (node, gpu_id)
);

CREATE TABLE stride_passes (                        -- the scheduler's fair-share state, per node and class
    node        TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    pass        INTEGER NOT NULL,
    PRIMARY KEY (node, priority)
);
