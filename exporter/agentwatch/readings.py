"""What the collectors saw, handed to the insights collector without collectors importing each other.

The containers collector publishes one ``ContainerReading`` per container per cycle, the process
collector one ``GroupReading`` per agent group, and the event stream thread every ``die``/``oom``
event. The insights collector ``take``s what arrived since its last turn. Everything here is a
plain value: the board holds the newest batch of each kind and a bounded queue of events, so a
slow or disabled insights collector can never make a producer wait or grow memory.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

#: Events kept between two turns of the insights collector (oldest dropped first).
MAX_EVENTS = 2000


@dataclass(frozen=True, slots=True)
class ContainerReading:
    """One container as the containers collector saw it in one cycle."""

    id: str
    #: container, image, compose_project, compose_service, then the ``label_*`` values
    labels: tuple[str, ...]
    state: str
    running: bool
    #: Working set in bytes; None while not running or when its stats could not be read.
    working_set: float | None
    #: Memory limit in bytes; 0 when unlimited.
    limit: float
    started_at: float
    finished_at: float
    #: Exit code of the last finished run; None when unknown.
    exit_code: int | None
    oom_killed: bool
    restart_count: int
    restart_policy: str
    max_retries: int
    health: str
    #: The container's command (Path and Args), cut short: tells a Node process from others.
    command: str = ""

    @property
    def name(self) -> str:
        return self.labels[0]


@dataclass(frozen=True, slots=True)
class GroupReading:
    """One agent process group (all its label sets summed) in one scan."""

    group: str
    processes: int
    rss: float


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """A container ``die`` or ``oom`` event from the engine's event stream."""

    kind: Literal["die", "oom"]
    container_id: str
    name: str
    image: str
    compose_project: str
    compose_service: str
    #: Exit code on a ``die`` event; None on ``oom`` (or when the engine sent none).
    exit_code: int | None
    #: Unix seconds (the engine's clock).
    at: float
    #: The container's labels the config exports (docker.label_allowlist), by container label name.
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class Batch:
    """What ``Readings.take`` hands over: each part is None when nothing new arrived."""

    containers: list[ContainerReading] | None = None
    containers_at: float = 0.0
    #: The ``label_*`` metric label names the container readings carry after the base four.
    extra_label_names: tuple[str, ...] = ()
    groups: list[GroupReading] | None = None
    groups_at: float = 0.0
    host_memory: tuple[float, float] | None = None
    events: list[EngineEvent] = field(default_factory=list)
    #: Whether an event stream feeds this board at all (docker.events).
    events_attached: bool = False
    events_dropped: int = 0


class Readings:
    """The board: producers ``put_*``, the insights collector ``take``s. Thread-safe."""

    def __init__(self, max_events: int = MAX_EVENTS) -> None:
        self._lock = threading.Lock()
        self._next = Batch()
        self._events: deque[EngineEvent] = deque(maxlen=max_events)
        self._dropped = 0
        self.events_attached = False

    def put_containers(self, readings: Sequence[ContainerReading], extra_label_names: Sequence[str],
                       at: float) -> None:
        with self._lock:
            self._next.containers = list(readings)
            self._next.containers_at = at
            self._next.extra_label_names = tuple(extra_label_names)

    def put_groups(self, readings: Sequence[GroupReading], host_memory: tuple[float, float] | None,
                   at: float) -> None:
        with self._lock:
            self._next.groups = list(readings)
            self._next.groups_at = at
            if host_memory is not None:
                self._next.host_memory = host_memory

    def put_event(self, event: EngineEvent) -> None:
        with self._lock:
            if len(self._events) == self._events.maxlen:
                self._dropped += 1
            self._events.append(event)

    def take(self) -> Batch:
        """Everything new since the last ``take`` (host memory stays until replaced)."""
        with self._lock:
            batch, host = self._next, self._next.host_memory
            batch.events = list(self._events)
            batch.events_attached = self.events_attached
            batch.events_dropped, self._dropped = self._dropped, 0
            self._events.clear()
            self._next = Batch(host_memory=host, extra_label_names=batch.extra_label_names)
        return batch
