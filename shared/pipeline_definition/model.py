"""The typed pipeline model a loaded definition becomes (frozen dataclasses, tuples, dict copies)."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.pipeline_definition import dag

DEFAULT_TAG = "latest"
DEFAULT_TIMEOUT = 600
MAX_TIMEOUT = 1800


@dataclass(frozen=True)
class Container:
    """An image to run; ``command`` has Docker CMD semantics (the entrypoint when the image has none)."""

    image: str
    tag: str = DEFAULT_TAG
    command: tuple[str, ...] = ()

    @property
    def reference(self) -> str:
        """``image:tag``, or the image alone when it is pinned by digest (``name@sha256:...``)."""
        return self.image if "@" in self.image else f"{self.image}:{self.tag}"


@dataclass(frozen=True)
class Requests:
    """Resources an operator or service needs: whole CPUs, whole GPUs, memory in MB (0.7.4 defaults)."""

    cpu: int = 1
    gpu: int = 0
    memory: int = 512


@dataclass(frozen=True)
class OperatorInput:
    """One ``input`` entry.

    ``from_operator`` and ``output_name`` are the upstream operator's and output's declared spelling once
    loaded; when ``from`` is absent, ``output_name`` keeps the input's own ``name`` label (if any).
    """

    path: str | None = None
    from_operator: str | None = None
    output_name: str | None = None
    type: str | None = None
    element_type: str | None = None
    shape: tuple[int, ...] | None = None

    @property
    def payload_subpath(self) -> str:
        """Payload folder mounted at ``path`` (the volume wiring table of the definition language)."""
        if self.from_operator is None:
            return "input"
        if self.output_name is None:
            return f"operators/{self.from_operator}"
        return f"operators/{self.from_operator}/{self.output_name}"


@dataclass(frozen=True)
class OperatorOutput:
    """One ``output`` entry; ``name`` is None only for the single unnamed output of an api <= 0.4.0 operator."""

    name: str | None = None
    path: str | None = None
    type: str | None = None
    element_type: str | None = None
    shape: tuple[int, ...] | None = None

    def payload_subpath(self, operator_name: str) -> str:
        """Payload folder this output is written to, for the operator that declares it."""
        if self.name is None:
            return f"operators/{operator_name}"
        return f"operators/{operator_name}/{self.name}"


@dataclass(frozen=True)
class Service:
    """A long-running helper container (e.g. Triton) declared by an operator; deprecated since 0.7.1.

    ``http_connections`` are ``(env-var name, port or None)``: each name becomes an environment variable
    holding ``host:port`` of the service in every operator that declares it. ``volume_connections`` are
    ``(env-var name, container path)``: a folder the service and those operators share at that path.
    """

    name: str
    container: Container
    requests: Requests = Requests()
    variables: dict[str, str] = field(default_factory=dict, hash=False)
    http_connections: tuple[tuple[str, int | None], ...] = ()
    volume_connections: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Operator:
    """One step of the pipeline: a container with its inputs, outputs, resources and environment.

    ``upstream`` lists the operators named by ``from`` in this operator's inputs, in declaration order,
    without duplicates, in their declared spelling. ``timeout`` is in seconds (None: the pipeline's).
    """

    name: str
    description: str
    container: Container
    requests: Requests = Requests()
    inputs: tuple[OperatorInput, ...] = ()
    outputs: tuple[OperatorOutput, ...] = ()
    variables: dict[str, str] = field(default_factory=dict, hash=False)
    services: tuple[Service, ...] = ()
    models: tuple[str, ...] = ()
    timeout: int | None = None
    upstream: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pipeline:
    """A loaded, validated pipeline definition.

    ``api_version`` is normalised to ``major.minor.patch``. ``parameters`` are the effective template
    values (string defaults merged with the arguments given to the loader). ``timeout`` is in seconds: the
    document's ``timeout`` or the loader's default, clamped to the loader's maximum (a larger value is not an
    error: the platform maximum wins). ``operators`` keep declaration order and form an acyclic graph.
    """

    api_version: str
    name: str
    description: str = ""
    parameters: dict[str, str] = field(default_factory=dict, hash=False)
    operators: tuple[Operator, ...] = ()
    timeout: int = DEFAULT_TIMEOUT
    pull_secrets: tuple[str, ...] = ()

    def operator(self, name: str) -> Operator:
        """The operator called ``name`` (names are case-insensitive); KeyError when there is none."""
        wanted = name.casefold()
        for op in self.operators:
            if op.name.casefold() == wanted:
                return op
        raise KeyError(f"pipeline {self.name!r} has no operator named {name!r}")

    def roots(self) -> tuple[str, ...]:
        """Operators with no upstream operator (they read the payload input), in declaration order."""
        return tuple(op.name for op in self.operators if not op.upstream)

    def downstream(self, name: str) -> tuple[str, ...]:
        """Operators with a direct input from ``name``, in declaration order."""
        return dag.downstream(self._graph(), self.operator(name).name)

    def topological_order(self) -> tuple[str, ...]:
        """Every operator after all its upstream ones; ties broken by declaration order."""
        return dag.topological_order(self._graph())

    def _graph(self) -> dict[str, tuple[str, ...]]:
        return {op.name: op.upstream for op in self.operators}
