"""Run with the official nvidia-clara-client: a job's payload through the names a client knows. Prints one
JSON line.

A file uploaded as ``a.txt`` to a job's payload is downloaded as uploaded (``a.txt``) and as Details lists it
(``/input/a.txt``); the payload cannot be deleted before the job stopped, and can be once it was cancelled.

usage: payloads_conformance.py HOST:PORT PIPELINE.yaml FILE DOWNLOAD_DIR
"""

import hashlib
import json
import pathlib
import sys
import time

import nvidia_clara.job_types as job_types
import nvidia_clara.pipeline_types as pipeline_types
from nvidia_clara.jobs_client import JobsClient
from nvidia_clara.payloads_client import PayloadsClient
from nvidia_clara.pipelines_client import PipelinesClient


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def error_of(call):
    """The message the client raises for a refused call, or None when the call succeeded."""
    try:
        call()
    except Exception as exc:
        return str(exc)
    return None


address, definition, source, download_dir = sys.argv[1:]
host, port = address.rsplit(":", 1)
pipelines = PipelinesClient(target=host, port=port)
jobs = JobsClient(target=host, port=port)
payloads = PayloadsClient(target=host, port=port)

pipeline_id = pipelines.create_pipeline(
    definition=[
        pipeline_types.PipelineDefinition(
            name=pathlib.Path(definition).name, content=pathlib.Path(definition).read_text()
        )
    ]
)
job = jobs.create_job(job_name="conformance", pipeline_id=pipeline_id)
uploaded = payloads.upload(job.payload_id, "a.txt", file_path=source)
details = payloads.get_details(job.payload_id)

downloads = {}
for name in ("a.txt", "/input/a.txt"):
    target = pathlib.Path(download_dir) / name.strip("/").replace("/", "__")
    found = payloads.download_from(job.payload_id, name, dest_path=str(target))
    downloads[name] = [found.name, sha256(target)]

delete_before_start = error_of(lambda: payloads.delete_payload(job.payload_id))
still_there = [f.name for f in payloads.get_details(job.payload_id).file_details]

jobs.cancel_job(job.job_id, reason="not needed")
deadline = time.monotonic() + 30
while jobs.get_status(job_id=job.job_id).job_state != job_types.JobState.Stopped.value:
    if time.monotonic() > deadline:
        raise SystemExit("the cancelled job did not stop")
    time.sleep(0.05)
delete_after_cancel = error_of(lambda: payloads.delete_payload(job.payload_id))
details_after_delete = error_of(lambda: payloads.get_details(job.payload_id))

print(
    json.dumps(
        {
            "job_id": job.job_id.value,
            "payload_id": job.payload_id.value,
            "uploaded": [uploaded.name, uploaded.size],
            "files": sorted((f.name, f.size) for f in details.file_details),
            "source_sha256": sha256(pathlib.Path(source)),
            "downloads": downloads,
            "delete_before_start": delete_before_start,
            "still_there": still_there,
            "delete_after_cancel": delete_after_cancel,
            "details_after_delete": details_after_delete,
        }
    )
)
