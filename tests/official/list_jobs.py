"""Run with the official nvidia-clara-client: Jobs.List with and without a filter while one job is pending,
one running and one stopped. Prints one JSON line; leaves the running job running (the test cancels it).

usage: list_jobs.py HOST:PORT QUICK.yaml SLOW.yaml
"""

import json
import pathlib
import sys
import time

import nvidia_clara.job_types as job_types
from nvidia_clara.jobs_client import JobsClient
from nvidia_clara.pipeline_types import PipelineDefinition
from nvidia_clara.pipelines_client import PipelinesClient

address, quick_path, slow_path = sys.argv[1:]
host, port = address.rsplit(":", 1)
pipelines = PipelinesClient(target=host, port=port)
jobs = JobsClient(target=host, port=port)


def pipeline(path):
    path = pathlib.Path(path)
    return pipelines.create_pipeline(definition=[PipelineDefinition(name=path.name, content=path.read_text())])


def wait_for(job_id, state):
    deadline = time.monotonic() + 60
    while jobs.get_status(job_id).job_state != state.value:
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id.value} never reached {state}")
        time.sleep(0.05)


quick, slow = pipeline(quick_path), pipeline(slow_path)
stopped = jobs.create_job(job_name="stopped", pipeline_id=quick)
jobs.start_job(stopped.job_id)
wait_for(stopped.job_id, job_types.JobState.Stopped)
running = jobs.create_job(job_name="running", pipeline_id=slow)
jobs.start_job(running.job_id)
wait_for(running.job_id, job_types.JobState.Running)
pending = jobs.create_job(job_name="pending", pipeline_id=quick)

every_state = job_types.JobFilter(
    has_job_state=[job_types.JobState.Pending, job_types.JobState.Running, job_types.JobState.Stopped]
)
print(
    json.dumps(
        {
            "ids": {"stopped": stopped.job_id.value, "running": running.job_id.value, "pending": pending.job_id.value},
            "no_filter": [job.job_id.value for job in jobs.list_jobs()],
            "empty_filter": [job.job_id.value for job in jobs.list_jobs(job_types.JobFilter())],
            "every_state": sorted(job.job_id.value for job in jobs.list_jobs(every_state)),
        }
    )
)
