-- The node an operator was placed on (a Docker Swarm node id with the swarm runtime; '' where the jobs
-- process runs operators on its own machine), so a restart holds its resources again on that node.
ALTER TABLE operators ADD COLUMN node TEXT NOT NULL DEFAULT '';
