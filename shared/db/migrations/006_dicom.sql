-- The DICOM service: the associations it answered, the jobs it made of received instances, and the
-- exports of those jobs' results to DICOM destinations. Received instances wait on disk (storage), not here.

CREATE TABLE dicom_associations (
    id          TEXT PRIMARY KEY,
    called      TEXT NOT NULL,                     -- the AE title the peer asked for
    calling     TEXT NOT NULL,
    address     TEXT NOT NULL,                     -- the peer's IP address
    outcome     TEXT NOT NULL,                     -- 'released', 'aborted' or 'rejected'
    reason      TEXT NOT NULL DEFAULT '',          -- why it was rejected
    instances   INTEGER NOT NULL DEFAULT 0,        -- stored (refused ones are not counted)
    bytes       INTEGER NOT NULL DEFAULT 0,
    started     REAL NOT NULL,
    ended       REAL NOT NULL
);
CREATE INDEX dicom_associations_ended ON dicom_associations (ended);

CREATE TABLE dicom_jobs (                          -- a job made of received instances, until its export is settled
    job_id      TEXT PRIMARY KEY,
    payload_id  TEXT NOT NULL,                     -- where its results are found
    called      TEXT NOT NULL,                     -- the AE title whose mapping made it (and names its export)
    state       TEXT NOT NULL,                     -- 'running' until the job ended, then 'ended'
    created     REAL NOT NULL
);
CREATE INDEX dicom_jobs_state ON dicom_jobs (state);

CREATE TABLE dicom_exports (                       -- one job's results to one destination
    job_id      TEXT NOT NULL,
    destination TEXT NOT NULL,                     -- the destination's name in the configuration
    state       TEXT NOT NULL,                     -- 'pending', 'sent' or 'failed'
    files       INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    error       TEXT NOT NULL DEFAULT '',          -- the last attempt's failure
    next_try    REAL NOT NULL,                     -- when a pending export is tried (again)
    updated     REAL NOT NULL,
    PRIMARY KEY (job_id, destination)
);
