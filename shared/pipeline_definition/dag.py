"""Graph helpers over ``{node: upstream nodes}`` maps whose key order is the declaration order."""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

Graph = Mapping[str, Sequence[str]]


def downstream(graph: Graph, name: str) -> tuple[str, ...]:
    """Nodes that list ``name`` among their upstream nodes, in declaration order."""
    return tuple(node for node, ups in graph.items() if name in ups)


def topological_order(graph: Graph) -> tuple[str, ...]:
    """Kahn's algorithm, always taking the earliest-declared ready node; ValueError on a cycle."""
    order, _ = _kahn(graph)
    if len(order) != len(graph):
        raise ValueError(f"the graph has a cycle: {' -> '.join(find_cycle(graph) or ())}")
    return order


def find_cycle(graph: Graph) -> tuple[str, ...] | None:
    """One cycle as ``(a, b, ..., a)`` in data-flow order, or None when the graph is acyclic.

    Every node Kahn's algorithm leaves behind has an upstream node that was left behind too, so walking
    upstream from any of them must revisit a node: the walk from that node on is a cycle.
    """
    _, left = _kahn(graph)
    if not left:
        return None
    walk: list[str] = [next(iter(left))]
    seen: dict[str, int] = {walk[0]: 0}
    while True:
        nxt = next(up for up in graph[walk[-1]] if up in left)
        if nxt in seen:
            loop = walk[seen[nxt] :][::-1]  # upstream walk -> data-flow order
            order = list(graph)
            start = min(range(len(loop)), key=lambda i: order.index(loop[i]))
            loop = loop[start:] + loop[:start]  # begin at the earliest-declared node, for stable messages
            return (*loop, loop[0])
        seen[nxt] = len(walk)
        walk.append(nxt)


def _kahn(graph: Graph) -> tuple[tuple[str, ...], set[str]]:
    index = {name: i for i, name in enumerate(graph)}
    pending = {name: len({up for up in ups if up in index}) for name, ups in graph.items()}
    ready = [index[name] for name, count in pending.items() if count == 0]
    heapq.heapify(ready)
    names = list(graph)
    order: list[str] = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for child in downstream(graph, name):
            pending[child] -= 1
            if pending[child] == 0:
                heapq.heappush(ready, index[child])
    return tuple(order), {name for name, count in pending.items() if count > 0}
