"""Run with the official nvidia-clara-client (its own venv): Clara service calls. Prints one JSON line."""

import json
import sys

from nvidia_clara.clara_client import ClaraClient

host, port = sys.argv[1].rsplit(":", 1)
client = ClaraClient(target=host, port=port)
version = client.version()
utilization = client.list_utilization()
client.stop()
print(
    json.dumps(
        {
            "version": [version.major, version.minor, version.patch, version.label],
            "snapshots": len(utilization),
            "gpus": sum(len(snapshot.gpu_metrics) for snapshot in utilization),
        }
    )
)
