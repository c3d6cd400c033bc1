"""Which GPU is whose, for the GPUs page: the scheduling API's ledger (each node's GPU ids and the grants that
hold them) joined with the GPUs Clara.Utilization reports (a node and a PCIe bus each, no id).

Utilization reports the GPUs NVML sees on the jobs service's own machine, in NVML's index order, and the
ledger's GPU ids there are those indexes (``CLARET_GPUS``, or every GPU NVML sees). So GPU ``i`` of the
ledger's own node (``""``) is the ``i``-th GPU Utilization reports. A GPU id that is no index (a UUID in
``CLARET_GPUS``) or one of another node (Docker Swarm) has no utilization to show; a GPU NVML sees that the
ledger does not schedule is listed on its own."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from claret.records import Gpu, HeldGrant, QueueSnapshot


@dataclass(frozen=True)
class LedgerGpu:
    """One GPU of the page: its ledger entry (if any), who holds it, and its latest utilization (if reported)."""

    node: str
    """The ledger's node (``""``: the jobs service's own machine); Utilization's for a GPU the ledger lacks."""
    gpu_id: str | None
    """None for a GPU NVML sees that the ledger does not schedule (or when the ledger could not be read)."""
    holders: tuple[HeldGrant, ...]
    measured: Gpu | None
    """Its latest Utilization report; None for a GPU declared but not seen by NVML."""

    @property
    def key(self) -> str:
        """What names it in the page (``data-gpu``): its id (``node/id`` on another node), or node/bus."""
        if self.gpu_id is not None:
            return f"{self.node}/{self.gpu_id}" if self.node else self.gpu_id
        return f"{self.node}/bus{self.measured.pcie_id}" if self.measured else self.node


def ledger(snapshot: QueueSnapshot | None, reported: Sequence[tuple[int, Gpu]]) -> list[LedgerGpu]:
    """The ledger's GPUs node by node with their holders, then those only Utilization reports. ``reported``:
    each GPU's NVML index (its place in its node's latest report) and latest report."""
    nodes, held = (snapshot.nodes, snapshot.held) if snapshot else ((), ())
    own = dict(reported) if len({gpu.node_id for _, gpu in reported}) == 1 else {}  # unambiguous: one machine
    found: list[LedgerGpu] = []
    for node in nodes:
        for gpu_id in node.capacity.gpu_ids:
            measured = own.get(int(gpu_id)) if node.name == "" and gpu_id.isdigit() else None
            holders = tuple(grant for grant in held if grant.node == node.name and gpu_id in grant.gpu_ids)
            found.append(LedgerGpu(node.name, gpu_id, holders, measured))
    listed = {(e.measured.node_id, e.measured.pcie_id) for e in found if e.measured is not None}
    found += [LedgerGpu(g.node_id, None, (), g) for _, g in reported if (g.node_id, g.pcie_id) not in listed]
    return found
