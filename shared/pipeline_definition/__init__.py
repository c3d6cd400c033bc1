"""The Clara pipeline definition language (CPDL) loader: YAML files in, a validated :class:`Pipeline` out.

Pure and synchronous: no gRPC, no I/O beyond parsing the strings it is given. See :func:`load_pipeline`.

Choices where the definition language leaves room (the rules users see are in docs/behaviour.md, Pipelines):

* ``timeout`` (pipeline and operator, seconds, >= 1) above the maximum is clamped, not refused.
* An output needs a ``name`` when the operator has several outputs or the output is typed; a lone untyped
  output may stay unnamed even at api >= 0.5.0 (the documentation's 0.6.0 examples do so).
* ``path`` is required for every input/output except typed shared-memory ones (array, string, primitives).
* Typed attributes are ignored before api 0.5.0; ``models`` are accepted at any version (NVIDIA tools do).
* An input without ``name`` may read an upstream's only output even if it is named.
* No two inputs/outputs of an operator may be mounted at the same container path.
* An input/output ``path`` is rooted, without NUL and without a ``..`` segment (the runtime creates it as a
  mount point, and ``..`` could climb out of the operator's root); ``//`` and a trailing ``/`` are accepted.
  Names that become payload folders (operator, output, ``from``) are 1-255 of ``A-Z a-z 0-9 _ -``, so no
  payload subpath can leave the payload.
* ``requests``: an explicit ``cpu: 0`` or ``memory: 0`` means the default (1 CPU, 512 MB), never "no limit".
* Scalars are read as written: ``tag: 18.10`` is ``"18.10"``; only ``true``/``false`` are booleans (YAML
  1.2), so ``on``/``yes`` stay strings. Whole numbers may be written ``2``, ``2.0`` or ``"2"``.
* Parameter names match exactly (case-sensitive), like the environment variables they often feed.
* Imported service files are not templates: their ``args`` are ignored and placeholders kept as text.
* Keys the language does not define (:mod:`keys`) are kept and ignored; :func:`load_definition` names
  each (file, line, key path) for Create and Update to report as warnings.
* Bounds against hostile input are in :mod:`shared.pipeline_definition.limits`.
"""

from shared.pipeline_definition.files import DefinitionFile
from shared.pipeline_definition.loader import LoadedDefinition, load_definition, load_pipeline, load_pipeline_cached
from shared.pipeline_definition.model import (
    DEFAULT_TIMEOUT,
    MAX_TIMEOUT,
    Container,
    Operator,
    OperatorInput,
    OperatorOutput,
    Pipeline,
    Requests,
    Service,
)
from shared.pipeline_definition.problems import IgnoredKey

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_TIMEOUT",
    "Container",
    "DefinitionFile",
    "IgnoredKey",
    "LoadedDefinition",
    "Operator",
    "OperatorInput",
    "OperatorOutput",
    "Pipeline",
    "Requests",
    "Service",
    "load_definition",
    "load_pipeline",
    "load_pipeline_cached",
]
