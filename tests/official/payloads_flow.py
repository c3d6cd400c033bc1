"""Run with the official nvidia-clara-client: every PayloadsClient call. Prints one JSON line.

usage: payloads_flow.py HOST:PORT FILE DOWNLOAD_TO
"""

import hashlib
import json
import sys

from nvidia_clara.payloads_client import PayloadsClient

host, port = sys.argv[1].rsplit(":", 1)
source, target = sys.argv[2], sys.argv[3]
client = PayloadsClient(target=host, port=port)
payload = client.create_payload(metadata={"study": "s1"})
uploaded = client.upload(payload.payload_id, "scans/image.raw", file_path=source)
client.upload(payload.payload_id, "notes.txt", file_path=source)
details = client.get_details(payload.payload_id)
client.download_from(payload.payload_id, "/scans/image.raw", dest_path=target)
added = client.add_metadata(payload.payload_id, {"site": "a"})
removed = client.remove_metadata(payload.payload_id, ["study"])
client.remove_from(payload.payload_id, "notes.txt")
after_remove = client.get_details(payload.payload_id)
client.delete_payload(payload.payload_id)
try:
    client.get_details(payload.payload_id)
    missing_error = None
except Exception as exc:
    missing_error = str(exc)
with open(target, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
print(
    json.dumps(
        {
            "type": int(payload.payload_type),
            "uploaded": [uploaded.name, uploaded.size],
            "files": sorted((f.name, f.size) for f in details.file_details),
            "metadata": dict(details.metadata),
            "downloaded_sha256": digest,
            "added": dict(added),
            "removed": dict(removed),
            "after_remove": [f.name for f in after_remove.file_details],
            "missing_error": missing_error,
        }
    )
)
