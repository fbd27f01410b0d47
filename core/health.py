"""Use case: is every dependency answering? Each probe is a callable that raises when it is not."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Probe = Callable[[], None]


@dataclass(frozen=True)
class DependencyHealth:
    name: str
    healthy: bool
    duration_ms: float
    error: str | None


@dataclass(frozen=True)
class HealthReport:
    dependencies: list[DependencyHealth]

    @property
    def healthy(self) -> bool:
        return all(dependency.healthy for dependency in self.dependencies)

    def to_json(self) -> dict[str, object]:
        return {
            "status": "healthy" if self.healthy else "unhealthy",
            "dependencies": {
                d.name: {"status": "up" if d.healthy else "down", "durationMs": round(d.duration_ms, 1)}
                | ({"error": d.error} if d.error else {})
                for d in self.dependencies
            },
        }


def check_health(probes: Mapping[str, Probe]) -> HealthReport:
    results = []
    for name, probe in probes.items():
        started = time.perf_counter()
        try:
            probe()
        except Exception as error:  # noqa: BLE001 - any failure means "down"; the kind is what we report
            results.append(DependencyHealth(name, False, (time.perf_counter() - started) * 1000, type(error).__name__))
        else:
            results.append(DependencyHealth(name, True, (time.perf_counter() - started) * 1000, None))
    return HealthReport(results)
