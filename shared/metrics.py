"""Prometheus metrics of one server process (prometheus-client), served on their own HTTP port.

Counters and histograms (:class:`Metrics`) are updated where things happen (the RPC wrapper, the executor,
the payload servicer, the database); gauges that describe the whole platform (jobs by state, operators waiting and
running) are read from the shared database when Prometheus scrapes, so every replica reports the same
truth. Nothing here runs per chunk or per log line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class Metrics:
    """The counters and histograms of one server process, in a registry of its own.

    Built once by the composition root (:class:`shared.resources.Resources`) and handed to what updates them:
    the RPC wrapper (through each servicer), the executor, the payloads servicer, the database. A test builds
    its own and reads its registry.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        self.rpcs = Counter(
            "claret_rpc_requests",
            "RPCs answered, by response code (ResponseHeader.code).",
            ["service", "method", "code"],
            registry=self.registry,
        )
        self.rpc_seconds = Histogram(
            "claret_rpc_duration_seconds",
            "Time to answer an RPC (streams: to their end).",
            ["service", "method"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.operators_finished = Counter(
            "claret_operators_finished", "Operators that ended, by outcome.", ["outcome"], registry=self.registry
        )
        self.queue_wait_seconds = Histogram(
            "claret_queue_wait_seconds",
            "Time from ready to started, by job priority.",
            ["priority"],
            buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800),
            registry=self.registry,
        )
        self.runtime_start_seconds = Histogram(
            "claret_runtime_start_seconds",
            "Time for the runtime to start an operator.",
            ["runtime"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.services_started = Counter(
            "claret_services_started",
            "Pipeline services started, by outcome (ready, failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.services_running = Gauge(
            "claret_services_running",
            "Pipeline services running and ready in this jobs process.",
            registry=self.registry,
        )
        self.dicom_instances = Counter(
            "claret_dicom_instances_received",
            "DICOM instances received by C-STORE, by outcome (stored, refused, ignored).",
            ["outcome"],
            registry=self.registry,
        )
        self.dicom_associations = Counter(
            "claret_dicom_associations",
            "DICOM associations, by outcome (released, aborted, rejected).",
            ["outcome"],
            registry=self.registry,
        )
        self.dicom_jobs = Counter(
            "claret_dicom_jobs_created", "Jobs created from received DICOM instances.", registry=self.registry
        )
        self.dicom_exports = Counter(
            "claret_dicom_exports",
            "Exports of DICOM results to a destination, by outcome (sent, retried, failed).",
            ["outcome"],
            registry=self.registry,
        )
        payload_bytes = Counter(
            "claret_payload_bytes", "Payload bytes moved, by direction.", ["direction"], registry=self.registry
        )
        self.uploaded_bytes = payload_bytes.labels("uploaded")
        self.downloaded_bytes = payload_bytes.labels("downloaded")
        self.db_seconds = Histogram(
            "claret_db_transaction_seconds",
            "Time of one database unit of work.",
            ["kind"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1, 5),
            registry=self.registry,
        )
        self._rpc_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def rpc_answered(self, service: str, method: str, code: int, seconds: float) -> None:
        """Count one answered RPC and its duration. The labelled children are looked up once per (service,
        method, code): ``labels()`` takes a lock and builds a key each time, a cost every polled Status paid."""
        children = self._rpc_children.get((service, method, code))
        if children is None:
            children = self.rpcs.labels(service, method, str(code)), self.rpc_seconds.labels(service, method)
            self._rpc_children[service, method, code] = children
        count, duration = children
        count.inc()
        duration.observe(seconds)

    def register(self, collector: Collector) -> bool:
        """Add a collector; False when another one already reports its metrics (one jobs service per
        process is the deployed shape)."""
        try:
            self.registry.register(collector)
        except ValueError:
            return False
        return True

    def unregister(self, collector: Collector) -> None:
        with contextlib.suppress(KeyError):
            self.registry.unregister(collector)

    def serve(self, host: str, port: int) -> int:
        """Start the /metrics HTTP endpoint in a thread; returns the bound port (``port`` 0 picks one)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        bound: int = server.server_address[1]
        return bound


Counts = tuple[list[tuple[str, str, int]], list[tuple[str, int]]]
"""(state, status, jobs) rows and (operator status, operators) rows, states and statuses by name."""


class DatabaseCollector(Collector):
    """Jobs by state and status, operators by status: counted in the shared database at scrape time.

    ``count`` runs on the metrics server's thread; it reads the database through the service's loop."""

    def __init__(self, count: Callable[[], Counts]) -> None:
        self._count = count

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families without counting (the registry asks at registration, on the service's own loop)."""
        yield from self._families()

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        jobs = GaugeMetricFamily("claret_jobs", "Jobs by state and status.", labels=["state", "status"])
        operators = GaugeMetricFamily(
            "claret_operators",
            "Operators of started jobs by status (pending = waiting for upstream or resources).",
            labels=["status"],
        )
        return jobs, operators

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs, operators = self._families()
        job_rows, operator_rows = self._count()
        for state, status, count in job_rows:
            jobs.add_metric([state, status], count)
        for status, count in operator_rows:
            operators.add_metric([status], count)
        yield jobs
        yield operators


class CapacityCollector(Collector):
    """What this node's scheduler has granted, against what it has: GPUs, cpu cores, memory MB."""

    def __init__(self, node: str, snapshot: Callable[[], dict[str, tuple[float, float]]]) -> None:
        self._node = node
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for resource, (granted, total) in self._snapshot().items():
            for kind, value in (("granted", granted), ("total", total)):
                family = GaugeMetricFamily(
                    f"claret_{resource}_{kind}", f"{resource} {kind} on this node.", labels=["node"]
                )
                family.add_metric([self._node], value)
                yield family
