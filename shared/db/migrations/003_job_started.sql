-- A job's `started` is when its first operator started (NULL while it waits in the queue, as the API says);
-- when Start accepted it is kept apart, as `queued`.

ALTER TABLE jobs RENAME COLUMN started TO queued;
ALTER TABLE jobs ADD COLUMN started REAL;
UPDATE jobs SET started = (SELECT min(o.started) FROM operators o WHERE o.job_id = jobs.id);
