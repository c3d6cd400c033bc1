-- The Model Repository: models uploaded through the Models service, and the catalogs and instances (lists
-- of models) that name them. Model files live in the model store (CLARET_MODELS_DIR), not here.

CREATE TABLE models (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,              -- a Triton model name: the folder in the repository
    type        INTEGER NOT NULL,                  -- ModelType's wire number
    metadata    TEXT NOT NULL DEFAULT '{}',
    size        INTEGER NOT NULL,                  -- bytes of the archive as uploaded
    versions    TEXT NOT NULL,                     -- JSON list of the version folders
    created     REAL NOT NULL
);

CREATE TABLE model_lists (                         -- catalogs and instances: one shape, told apart by kind
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,                     -- 'catalog' or 'instance'
    created     REAL NOT NULL
);

CREATE TABLE model_list_entries (
    list_id     TEXT NOT NULL,
    model_id    TEXT NOT NULL,
    position    INTEGER NOT NULL,                  -- the order UpdateCatalog / UpdateInstance gave
    PRIMARY KEY (list_id, model_id)
);
