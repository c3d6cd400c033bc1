-- Pipeline services the jobs service runs (one per container identity and node), so that a restart finds
-- them again; a row goes when its service stops. Their resources are held in the ledger as job 'services'.

CREATE TABLE services (
    id          TEXT PRIMARY KEY,                   -- the running instance (container name, log file)
    node        TEXT NOT NULL,
    identity    TEXT NOT NULL,                      -- JSON [image, command]: what makes two services one
    name        TEXT NOT NULL,                      -- as declared by the operator that started it
    owner       TEXT NOT NULL,                      -- the jobs process that started (or adopted) it
    spec        TEXT NOT NULL,                      -- JSON: its cpu and memory_mb, to hold them again
    gpu_ids     TEXT NOT NULL,                      -- JSON list, granted from the ledger
    runtime_id  TEXT,                               -- NULL until the runtime started it
    network     TEXT,                               -- JSON ServiceNetwork, once started
    ready       REAL,                               -- when its ports first accepted connections
    started     REAL NOT NULL,
    last_used   REAL NOT NULL,
    UNIQUE (node, identity)
);

CREATE TABLE service_models (                       -- models a Triton service has loaded (not to be deleted)
    service_id  TEXT NOT NULL,
    model       TEXT NOT NULL,                      -- the model's name
    PRIMARY KEY (service_id, model)
);
