"""Run with the official nvidia-clara-client: create and update a pipeline whose definition holds keys the
language does not define. Prints one JSON line.

usage: pipeline_warnings.py HOST:PORT PIPELINE.yaml [IMPORTED.yaml ...]
(files are sent under their paths relative to the pipeline document's folder)
"""

import json
import pathlib
import sys

from nvidia_clara.pipeline_types import PipelineDefinition
from nvidia_clara.pipelines_client import PipelinesClient

host, port = sys.argv[1].rsplit(":", 1)
paths = [pathlib.Path(arg) for arg in sys.argv[2:]]
folder = paths[0].parent
definition = [PipelineDefinition(name=path.relative_to(folder).as_posix(), content=path.read_text()) for path in paths]
client = PipelinesClient(target=host, port=port)
pipeline_id = client.create_pipeline(definition=definition)  # raises on a negative header code
client.update_pipeline(pipeline_id, definition)
details = client.pipeline_details(pipeline_id)
print(
    json.dumps(
        {
            "id": pipeline_id.value,
            "details_name": details.name,
            "details_files": len(details.definition),
        }
    )
)
