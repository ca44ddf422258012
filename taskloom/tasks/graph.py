"""Graph: tasks wired as a directed acyclic graph with conditional edges.

Scheduling is in waves, in the order nodes were added, so step ids stay deterministic across replays:
a node runs once every upstream node has either run or been skipped and at least one incoming edge was
*taken* (its source ran and its condition held). A node none of whose incoming edges is taken is skipped,
and so is everything that only it leads to. Each node runs at most once per graph run; a join node
receives ``{upstream_name: result}`` of the edges taken into it.

Inside a workflow a graph run also records what the dashboard draws (:class:`_GraphLog`): its shape
(``graph_started``: nodes and edges) and, per wave, which step runs which node and which nodes were
skipped (``graph_wave``). Neither is a step: they take no step id, replay never reads them, and they go
into the store in the transaction of the wave's first step write, so they cost no write of their own.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from taskloom.context import current_scope
from taskloom.errors import GraphError
from taskloom.events import EventType, NewEvent
from taskloom.replay import StepScope
from taskloom.tasks.compose import gather_steps

_NO_INPUT: Any = object()  # `await graph()`: the start node gets no argument


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    condition: Callable[[Any], bool | Awaitable[bool]] | None = None


class Graph:
    """Build with ``add_node``/``add_edge``/``start_with``/``end_with``; run with ``await graph(input)``."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise GraphError(f"Graph needs a non-empty name, got {name!r}")
        self.name = name
        self._nodes: dict[str, Callable[..., Any]] = {}
        self._edges: list[Edge] = []
        self._start: str | None = None
        self._ends: list[str] = []

    # -- building ----------------------------------------------------------------------------------
    def add_node(self, name: str, action: Callable[..., Any]) -> Graph:
        if not isinstance(name, str) or not name:
            raise GraphError(f"graph {self.name!r}: node name must be a non-empty string, got {name!r}")
        if name in self._nodes:
            raise GraphError(f"graph {self.name!r}: node {name!r} was added twice")
        if not callable(action):
            raise GraphError(f"graph {self.name!r}: node {name!r} needs a task or function, got {action!r}")
        self._nodes[name] = action
        return self

    def add_edge(
        self, source: str, target: str, condition: Callable[[Any], bool | Awaitable[bool]] | None = None
    ) -> Graph:
        """An edge from ``source`` to ``target``, taken when ``condition(result of source)`` is true (a plain
        or ``async def`` function); without a condition, always."""
        if condition is not None and not callable(condition):
            raise GraphError(f"graph {self.name!r}: condition of edge {source!r} -> {target!r} is not callable")
        self._edges.append(Edge(source, target, condition))
        return self

    def start_with(self, name: str) -> Graph:
        if self._start is not None and self._start != name:
            raise GraphError(f"graph {self.name!r}: start node already set to {self._start!r}, not {name!r}")
        self._start = name
        return self

    def end_with(self, name: str) -> Graph:
        if name not in self._ends:
            self._ends.append(name)
        return self

    # -- validation --------------------------------------------------------------------------------
    def validate(self) -> Graph:
        """Raise :class:`GraphError` for unknown nodes, cycles and unreachable end nodes."""
        where = f"graph {self.name!r}"
        if self._start is None:
            raise GraphError(f"{where}: no start node; call start_with(name)")
        if not self._ends:
            raise GraphError(f"{where}: no end node; call end_with(name)")
        for role, name in [("start node", self._start), *(("end node", e) for e in self._ends)]:
            if name not in self._nodes:
                raise GraphError(f"{where}: {role} {name!r} is not a node; add it with add_node()")
        for edge in self._edges:
            for end in (edge.source, edge.target):
                if end not in self._nodes:
                    raise GraphError(f"{where}: edge {edge.source!r} -> {edge.target!r} names unknown node {end!r}")
        cycle = self._find_cycle()
        if cycle:
            raise GraphError(f"{where}: cycle {' -> '.join(cycle)}")
        reachable = self._reachable_from(self._start)
        for end in self._ends:
            if end not in reachable:
                raise GraphError(f"{where}: end node {end!r} cannot be reached from start node {self._start!r}")
        return self

    def _successors(self, name: str) -> list[str]:
        return [e.target for e in self._edges if e.source == name]

    def _reachable_from(self, start: str) -> set[str]:
        seen, stack = {start}, [start]
        while stack:
            for nxt in self._successors(stack.pop()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    def _find_cycle(self) -> list[str] | None:
        state: dict[str, int] = {}  # 1 = on the path, 2 = done
        path: list[str] = []

        def visit(node: str) -> list[str] | None:
            state[node] = 1
            path.append(node)
            for nxt in self._successors(node):
                if state.get(nxt) == 1:
                    return [*path[path.index(nxt) :], nxt]
                if nxt not in state:
                    found = visit(nxt)
                    if found:
                        return found
            path.pop()
            state[node] = 2
            return None

        for node in self._nodes:
            if node not in state:
                found = visit(node)
                if found:
                    return found
        return None

    # -- running -----------------------------------------------------------------------------------
    async def __call__(self, input: Any = _NO_INPUT) -> Any:
        """Run the graph. One end node reached: its result; several: ``{name: result}``; none: None.

        ``await graph()`` calls the start node with no argument; ``await graph(x)`` passes ``x`` (None too).
        """
        self.validate()
        assert self._start is not None
        reachable = self._reachable_from(self._start)
        incoming = {n: [e for e in self._edges if e.target == n and e.source in reachable] for n in reachable}
        results: dict[str, Any] = {}
        skipped: set[str] = set()
        taken: dict[str, list[str]] = {n: [] for n in reachable}
        pending = [n for n in self._nodes if n in reachable]
        log = _GraphLog.open(self, [n for n in self._nodes if n not in reachable])
        first = True
        while pending:
            wave: list[tuple[str, Any]] = []
            before = len(pending)
            for node in list(pending):
                if first and node == self._start:
                    wave.append((node, () if input is _NO_INPUT else (input,)))
                    pending.remove(node)
                    continue
                edges = incoming[node]
                if node == self._start or any(e.source not in results and e.source not in skipped for e in edges):
                    continue
                pending.remove(node)
                if not taken[node]:
                    skipped.add(node)
                    if log is not None:
                        log.skipped.append(node)
                    continue
                sources = taken[node]
                arg = results[sources[0]] if len(sources) == 1 else {s: results[s] for s in sources}
                wave.append((node, (arg,)))
            first = False
            if not wave:
                if len(pending) < before:  # nodes were skipped; their successors resolve next round
                    continue
                raise GraphError(f"graph {self.name!r}: nodes {pending} can never run")  # pragma: no cover
            calls = [self._nodes[node](*args) for node, args in wave]
            if log is not None:
                log.wave([node for node, _ in wave], calls)
            values = await gather_steps(calls)
            for (node, _), value in zip(wave, values, strict=True):
                results[node] = value
                for edge in self._edges:
                    if edge.source == node and edge.target in taken and await self._edge_taken(edge, value):
                        taken[edge.target].append(node)
        if log is not None and log.skipped:  # skipped after the last wave
            log.wave([], [])
        ended = {e: results[e] for e in self._ends if e in results}
        if len(ended) == 1:
            return next(iter(ended.values()))
        return ended or None

    async def _edge_taken(self, edge: Edge, value: Any) -> bool:
        """Whether ``edge`` is taken after its source returned ``value``.

        A condition may be ``async def`` (or return an awaitable): it is awaited. Conditions are evaluated
        one at a time, in the order of waves and edges, so task calls made inside one get the same step
        ids on every replay. A condition runs again on replay: one that reads the outside world should
        do it through a task, whose result is recorded.
        """
        if edge.condition is None:
            return True
        try:
            outcome = edge.condition(value)
            if inspect.isawaitable(outcome):
                outcome = await outcome
        except Exception as error:
            raise GraphError(
                f"graph {self.name!r}: condition of edge {edge.source!r} -> {edge.target!r} raised "
                f"{type(error).__name__}: {error}"
            ) from error
        return bool(outcome)

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, nodes={list(self._nodes)}, start={self._start!r}, ends={self._ends})"


class _GraphLog:
    """What a graph run records for the dashboard: its shape once, then one ``graph_wave`` per wave.

    A wave is recorded only when it runs for the first time: when the first step it calls (or, for a wave
    of plain functions, the scope's next step) is not in the log yet. A replayed wave was recorded with
    its first step's write, so nothing is written twice; and since the events wait for the run's next
    write (:meth:`ExecutionRun.write_with_next`), a wave whose steps were never written leaves no trace
    either. The graph's id (``graph_id``: its name and the first step id it may take) tells two runs of
    one graph apart. A log written before these events existed replays as before; its graph is not drawn.
    """

    def __init__(self, graph: Graph, scope: StepScope, unreachable: list[str]) -> None:
        self.scope = scope
        self.name = graph.name
        self.graph_id = f"{graph.name}@{self._next_step_id()}"
        edges = [
            {
                "source": e.source,
                "target": e.target,
                "condition": None if e.condition is None else getattr(e.condition, "__name__", "condition"),
            }
            for e in graph._edges
        ]
        shape = {"graph_id": self.graph_id, "nodes": list(graph._nodes), "edges": edges}
        self.shape: NewEvent | None = NewEvent(
            EventType.GRAPH_STARTED, None, graph.name, data={**shape, "start": graph._start, "ends": graph._ends}
        )
        #: nodes skipped since the last recorded wave (first: those the start node cannot reach)
        self.skipped: list[str] = list(unreachable)

    @classmethod
    def open(cls, graph: Graph, unreachable: list[str]) -> _GraphLog | None:
        """The log of this graph run inside a workflow; None outside one (nothing to record to)."""
        scope = current_scope.get()
        return cls(graph, scope, unreachable) if isinstance(scope, StepScope) else None

    def _next_step_id(self) -> str:
        return f"{self.scope.prefix}{self.scope.counter + 1}"

    def wave(self, nodes: list[str], calls: list[Any]) -> None:
        """Record a wave about to run: ``calls`` are what its nodes returned (a task's step call has its
        step id already: ids are fixed when a task is called)."""
        steps = {node: _step_id(call) for node, call in zip(nodes, calls, strict=True)}
        first = next((step for step in steps.values() if step is not None), None) or self._next_step_id()
        if first not in self.scope.run.steps:
            data = {"graph_id": self.graph_id, "nodes": steps, "skipped": self.skipped}
            wave = NewEvent(EventType.GRAPH_WAVE, None, self.name, data=data)
            self.scope.run.write_with_next(*([self.shape] if self.shape else []), wave)
        self.shape = None
        self.skipped = []


def _step_id(call: Any) -> str | None:
    """The step id a node's call took (a task's or a child workflow's), None for a plain function's."""
    step_id = getattr(call, "step_id", None)
    return step_id if isinstance(step_id, str) else None
