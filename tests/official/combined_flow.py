"""Run with the official nvidia-clara-client: the whole flow of its combined example, plus the JobsClient
calls around it. Prints one JSON line.

usage: combined_flow.py PIPELINES_ADDR JOBS_ADDR PAYLOADS_ADDR PIPELINE.yaml DOWNLOAD_DIR FILE [FILE ...]
(the three addresses are the same for `claret serve`, different for separately started services)
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


def number(value):
    """The client hands back some states as its enums and some as plain ints."""
    return int(getattr(value, "value", value))


def client(cls, address):
    host, port = address.rsplit(":", 1)
    return cls(target=host, port=port)


pipelines_addr, jobs_addr, payloads_addr, definition, download_dir, *files = sys.argv[1:]
pipelines = client(PipelinesClient, pipelines_addr)
jobs = client(JobsClient, jobs_addr)
payloads = client(PayloadsClient, payloads_addr)

pipeline_id = pipelines.create_pipeline(
    definition=[
        pipeline_types.PipelineDefinition(
            name=pathlib.Path(definition).name, content=pathlib.Path(definition).read_text()
        )
    ]
)
job = jobs.create_job(job_name="combined example", pipeline_id=pipeline_id, metadata={"source": "tests"})
for path in map(pathlib.Path, files):
    with open(path, "rb") as fp:
        payloads.upload(payload_id=job.payload_id, blob_name=path.name, file_object=fp)
jobs.add_metadata(job.job_id, {"extra": "1"})
removed = jobs.remove_metadata(job.job_id, ["extra"])
started = jobs.start_job(job_id=job.job_id)

deadline = time.monotonic() + 60
while True:
    status = jobs.get_status(job_id=job.job_id)
    if status.job_state == job_types.JobState.Stopped.value or time.monotonic() > deadline:
        break
    time.sleep(0.1)

details = payloads.get_details(job.payload_id)
downloads = {}
target = pathlib.Path(download_dir)
for item in details.file_details:
    if item.name.startswith("/operators/"):
        destination = target / item.name.lstrip("/").replace("/", "__")
        with open(destination, "wb") as wb:
            payloads.download_from(job.payload_id, "." + item.name, wb)
        downloads[item.name] = hashlib.sha256(destination.read_bytes()).hexdigest()
logs = {name: jobs.job_logs(job.job_id, name) for name in status.operator_details}
stopped_jobs = jobs.list_jobs(job_filter=job_types.JobFilter(has_job_state=[job_types.JobState.Stopped]))

# a second job, cancelled before it runs
second = jobs.create_job(job_name="to cancel", pipeline_id=pipeline_id)
token = jobs.cancel_job(second.job_id, reason="not needed")

print(
    json.dumps(
        {
            "start": [number(started.job_state), number(started.job_status)],
            "state": number(status.job_state),
            "status": number(status.job_status),
            "operators": {name: int(op["status"]) for name, op in status.operator_details.items()},
            "created_before_stopped": status.date_created <= status.date_stopped,
            "metadata": dict(status.metadata),
            "removed": dict(removed),
            "files": sorted(f.name for f in details.file_details),
            "downloads": downloads,
            "logs": logs,
            "listed": [j.job_id.value for j in stopped_jobs],
            "job_id": job.job_id.value,
            "cancel": [token.job_id.value == second.job_id.value, number(token.job_state), number(token.job_status)],
        }
    )
)
