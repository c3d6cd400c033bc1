"""Run with the official nvidia-clara-client: every PipelinesClient call. Prints one JSON line.

usage: pipelines_flow.py HOST:PORT PIPELINE.yaml [IMPORTED.yaml ...]
"""

import json
import pathlib
import sys

from nvidia_clara.pipeline_types import PipelineDefinition
from nvidia_clara.pipelines_client import PipelinesClient

host, port = sys.argv[1].rsplit(":", 1)
definition = [PipelineDefinition(name=path.name, content=path.read_text()) for path in map(pathlib.Path, sys.argv[2:])]
client = PipelinesClient(target=host, port=port)
pipeline_id = client.create_pipeline(definition=definition, metadata={"owner": "tests"})
listed = [(p.pipeline_id.value, p.name, dict(p.metadata)) for p in client.list_pipelines()]
details = client.pipeline_details(pipeline_id)
added = client.add_metadata(pipeline_id, {"stage": "dev"})
removed = client.remove_metadata(pipeline_id, ["owner"])
client.update_pipeline(pipeline_id, definition[:1] + definition[1:])
client.remove_pipeline(pipeline_id)
try:
    client.pipeline_details(pipeline_id)
    missing_error = None
except Exception as exc:  # the client raises on a negative header code
    missing_error = str(exc)
print(
    json.dumps(
        {
            "id": pipeline_id.value,
            "listed": listed,
            "details_name": details.name,
            "details_files": len(details.definition),
            "details_metadata": dict(details.metadata),
            "added": dict(added),
            "removed": dict(removed),
            "missing_error": missing_error,
        }
    )
)
