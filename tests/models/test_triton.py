"""Triton for operators' ``models:``, end to end on the sandbox runtime with the real tritonserver of
PyPI's nvidia-pytriton wheel (scripts/triton makes .triton): a Python-backend model uploaded through the
client, an operator that lists it asks Triton at $NVIDIA_TRITON_HTTPURI and writes the answer, a second
job reuses the same Triton without loading the model again, Clara.Stop halts it."""

from __future__ import annotations

import asyncio
import json
import os
import zipfile
from pathlib import Path

import pytest

from claret.errors import ClientError
from claret.records import ModelType
from protos.nvidia.clara.platform import jobs_pb2 as pb
from services.jobs import triton
from shared.errors import ErrorCode
from tests.helpers import ROOT
from tests.jobs_flow import DATA, process_alive, run_job, serving
from tests.store import query

TRITON_HOME = ROOT / ".triton"
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="sandboxed services need the jobs service to run as root"),
    pytest.mark.skipif(not (TRITON_HOME / ".ready").exists(), reason="no Triton: run scripts/triton"),
]

ADDER = DATA / "models" / "adder"
"""A Python-backend model answering INPUT0 + 1 (also bench/triton_first_inference.py's)."""
ASK = (
    "import json, os, urllib.request; "
    "body = json.dumps({'inputs': [{'name': 'INPUT0', 'shape': [4], 'datatype': 'FP32', 'data': [1, 2, 3, 4]}]}); "
    "url = 'http://' + os.environ['NVIDIA_TRITON_HTTPURI'] + '/v2/models/adder/infer'; "
    "request = urllib.request.Request(url, body.encode(), {'Content-Type': 'application/json'}); "
    "open('/output/answer.json', 'wb').write(urllib.request.urlopen(request).read()); "
    "print(os.environ['NVIDIA_TRITON_GRPCURI'], os.environ['NVIDIA_CLARA_TRTISURI'])"
)
PIPELINE = f"""api-version: 0.6.0
name: infer
operators:
- name: classify
  container:
    image: busybox
    command: ["python3", "-c", {json.dumps(ASK)}]
  output: [{{path: /output}}]
  models:
  - name: adder
"""


def adder_zip(folder: Path, plus: int = 1) -> Path:
    """The adder model zipped; ``plus``: what it adds (a new version of its model.py)."""
    archive = folder / f"adder-{plus}.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(p for p in ADDER.rglob("*") if p.is_file()):
            data = path.read_bytes().replace(b"(data + 1)", f"(data + {plus})".encode())
            zipped.writestr(f"adder/{path.relative_to(ADDER).as_posix()}", data)
    return archive


async def test_an_operator_infers_with_its_model_on_a_triton_that_later_jobs_reuse(tmp_path: Path) -> None:
    async with serving(tmp_path, triton_home=TRITON_HOME, cpus=8) as clara:
        model = await clara.client.upload_model("adder", ModelType.PY_TORCH, adder_zip(tmp_path))
        triton = []
        for _ in range(2):
            final, payload = await run_job(clara, PIPELINE, within=60)
            assert final.status == pb.JOB_STATUS_HEALTHY, list(final.messages)
            answer = json.loads(await clara.download(payload, "operators/classify/answer.json"))
            assert answer["outputs"][0]["data"] == [2.0, 3.0, 4.0, 5.0]
            assert await clara.logs(final.job_id.value, "classify") == ["127.0.0.1:8001 127.0.0.1:8000"]
            triton += query(clara.database, "SELECT id, runtime_id FROM services WHERE name = 'triton'")
        assert len(set(triton)) == 1  # one Triton served both jobs
        log = [line async for line in clara.client.read_service_log("triton")]
        assert sum("successfully loaded 'adder'" in line for line in log) == 1, log  # loaded once

        await clara.client.upload_model("adder", ModelType.PY_TORCH, adder_zip(tmp_path, plus=2))  # a new version
        final, payload = await run_job(clara, PIPELINE, within=60)
        answer = json.loads(await clara.download(payload, "operators/classify/answer.json"))
        assert answer["outputs"][0]["data"] == [3.0, 4.0, 5.0, 6.0]  # the same Triton loaded it again
        log = [line async for line in clara.client.read_service_log("triton")]
        assert sum("successfully loaded 'adder'" in line for line in log) == 2, log

        with pytest.raises(ClientError) as in_use:  # not deleted from under the Triton that serves it
            await clara.client.delete_model(model.id)
        assert in_use.value.code == ErrorCode.MODEL_IN_USE and "is loaded in a running Triton" in str(in_use.value)

        await clara.client.stop_platform()
        assert query(clara.database, "SELECT id FROM services") == []
        await clara.client.delete_model(model.id)  # now that no Triton has it loaded
        for _ in range(100):  # its processes (the model's stub too) are killed with its sandbox
            if not process_alive(str(triton[0][1])):
                break
            await asyncio.sleep(0.05)
        assert not process_alive(str(triton[0][1]))


async def test_models_without_a_triton_are_refused_at_start(tmp_path: Path) -> None:
    async with serving(tmp_path) as clara:  # no CLARET_TRITON_HOME
        await clara.client.upload_model("adder", ModelType.PY_TORCH, adder_zip(tmp_path))
        job = await clara.job(await clara.pipeline(PIPELINE))
        refused = await clara.start(job.job_id.value)
        assert refused.header.code == ErrorCode.TRITON_UNAVAILABLE
        assert "operator(s) 'classify' list models, and no Triton serves them" in refused.header.messages[0]


def test_each_runtime_gets_its_triton_and_the_image_name_splits_at_its_tag() -> None:
    repository = Path("/srv/models")
    sandbox = triton.for_runtime("sandbox", TRITON_HOME, "ignored:1", repository, 1)
    assert sandbox is not None and sandbox.container.command[0] == str(
        TRITON_HOME.resolve() / "tritonserver/bin/tritonserver"
    )
    assert sandbox.requests.gpu == 1 and "--pinned-memory-pool-byte-size=0" not in sandbox.container.command
    docker = triton.for_runtime("docker", None, "registry:5000/nvidia/tritonserver:24.10-py3", repository, 0)
    assert docker is not None
    assert (docker.container.image, docker.container.tag) == ("registry:5000/nvidia/tritonserver", "24.10-py3")
    assert docker.container.command[0] == "tritonserver" and docker.mounts[0].target == "/models"
    untagged = triton.for_runtime("docker", None, "registry:5000/tritonserver", repository, 0)
    assert untagged is not None and untagged.container.reference == "registry:5000/tritonserver:latest"
    assert triton.for_runtime("docker", TRITON_HOME, None, repository, 0) is None
    assert triton.for_runtime("sandbox", None, "image:1", repository, 0) is None
