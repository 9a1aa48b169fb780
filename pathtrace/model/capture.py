"""What a capture holds, and how its packets matched the run's events."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Captured:
    """One packet as an interface's capture socket saw it."""

    namespace: str
    ifname: str
    direction: str  # in, out
    time_ns: int
    wirelen: int
    data: bytes


@dataclass
class Correlation:
    """event position -> capture position, and what matched nothing."""

    matched: dict[int, int] = field(default_factory=dict)
    events_without_capture: list[int] = field(default_factory=list)
    captures_without_event: list[int] = field(default_factory=list)
    capture_tags: list[tuple[int, str] | None] = field(default_factory=list)
    # The (namespace, interface) pairs captured on; None: not known (older bundles).
    interfaces: set[tuple[str, str]] | None = None
