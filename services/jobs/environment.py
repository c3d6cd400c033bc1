"""What an operator sees: its mounts (the payload wiring) and its environment variables."""

from __future__ import annotations

from pathlib import Path

from services.jobs.model import JobRecord
from services.jobs.runtimes.base import Mount
from shared.pipeline_definition import Operator


def mounts(operator: Operator, payload_dir: Path) -> tuple[Mount, ...]:
    """Inputs read-only at their paths, outputs writable at theirs (outputs without a path are not mounted)."""
    found = [Mount(payload_dir / i.payload_subpath, i.path, read_only=True) for i in operator.inputs if i.path]
    found += [
        Mount(payload_dir / o.payload_subpath(operator.name), o.path, read_only=False)
        for o in operator.outputs
        if o.path
    ]
    return tuple(found)


def output_dirs(operator: Operator, payload_dir: Path) -> list[Path]:
    return [payload_dir / o.payload_subpath(operator.name) for o in operator.outputs]


def gpu_variables(gpu_ids: tuple[str, ...]) -> dict[str, str]:
    """Both CUDA's and the NVIDIA container runtime's view of the granted devices; 'void' hides every GPU."""
    visible = ",".join(gpu_ids)
    return {"NVIDIA_VISIBLE_DEVICES": visible or "void", "CUDA_VISIBLE_DEVICES": visible}


def variables(job: JobRecord, operator: Operator, gpu_ids: tuple[str, ...]) -> dict[str, str]:
    """The operator's own ``variables``, then the platform's (which win: they describe this run)."""
    first_input = next((i.path for i in operator.inputs if i.path), "")
    first_output = next((o.path for o in operator.outputs if o.path), "")
    return {
        **operator.variables,
        "NVIDIA_CLARA_JOB_ID": job.id,
        "NVIDIA_CLARA_JOB_NAME": job.name,
        "NVIDIA_CLARA_STAGE_NAME": operator.name,
        "NVIDIA_CLARA_PAYLOAD_ID": job.payload_id,
        "NVIDIA_CLARA_PIPELINE_ID": job.pipeline_id,
        "NVIDIA_CLARA_INPUT": first_input,
        "NVIDIA_CLARA_OUTPUT": first_output,
        "NVIDIA_CLARA_NOSYNCLOCK": "1",
        **gpu_variables(gpu_ids),
    }
