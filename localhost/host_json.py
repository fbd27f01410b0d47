"""The parts of host.json the local host honours: `extensions.http.routePrefix` and `extensions.queues`.

`extensions.queues` is the Storage queues extension's `QueuesOptions` (Microsoft.Azure.WebJobs.Extensions.Storage.
Queues 5.x, in extension bundle 4.x), with its defaults and its limits:

| key | default | limits |
|---|---|---|
| `batchSize` | 16 | 1 to 32 |
| `newBatchThreshold` | `batchSize / 2` times the processor count | 0 or more |
| `maxPollingInterval` | `00:01:00` | at least `00:00:00.100` |
| `visibilityTimeout` | `00:00:00` | |
| `maxDequeueCount` | 5 | 1 or more |
| `messageEncoding` | `base64` | `base64` or `none` |

Keys are matched without regard to case, as .NET configuration binding does. Times are .NET TimeSpans
(`[d.]hh:mm:ss[.fffffff]`); a bare number would be read by the host as a number of *days* (a Functions 1.x host.json
in milliseconds, say), so it is refused here. A key the extension does not know is ignored by the host; here it is
logged as a warning, as it is most likely a typo. A host-level `retry` section is not implemented: it is refused.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localhost.app_settings import BindingConfigError

log = logging.getLogger("localhost")

# The host's routePrefix when host.json does not set one.
DEFAULT_ROUTE_PREFIX = "api"
MAX_BATCH_SIZE = 32  # what one Get Messages call may return
MIN_POLLING_INTERVAL = 0.1  # QueuePollingIntervals.Minimum
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$")


@dataclass(frozen=True)
class QueuesOptions:
    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 60.0  # seconds
    visibility_timeout: float = 0.0  # seconds
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @property
    def max_concurrency(self) -> int:
        """At most this many messages of one function are processed at once: a batch plus the threshold."""
        return self.batch_size + self.new_batch_threshold

    @classmethod
    def from_section(cls, section: Mapping[str, Any], processor_count: int | None = None) -> QueuesOptions:
        where = "host.json extensions.queues"
        values = {str(key).lower(): value for key, value in section.items()}
        known = {"batchsize", "newbatchthreshold", "maxpollinginterval", "visibilitytimeout", "maxdequeuecount"}
        known.add("messageencoding")
        for key in section:
            if str(key).lower() not in known:
                log.warning("%s.%s is not a setting of the queues extension; it is ignored", where, key)
        batch_size = _integer(values, "batchsize", 16, where)
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise BindingConfigError(f"{where}.batchSize must be 1 to {MAX_BATCH_SIZE}, not {batch_size}")
        processors = processor_count if processor_count is not None else os.cpu_count() or 1
        threshold = _integer(values, "newbatchthreshold", batch_size // 2 * processors, where)
        if threshold < 0:
            raise BindingConfigError(f"{where}.newBatchThreshold must not be negative, not {threshold}")
        polling = _timespan(values, "maxpollinginterval", 60.0, where)
        if polling < MIN_POLLING_INTERVAL:
            raise BindingConfigError(f"{where}.maxPollingInterval must not be less than 00:00:00.100")
        visibility = _timespan(values, "visibilitytimeout", 0.0, where)
        max_dequeue_count = _integer(values, "maxdequeuecount", 5, where)
        if max_dequeue_count < 1:
            raise BindingConfigError(f"{where}.maxDequeueCount must not be less than 1, not {max_dequeue_count}")
        encoding = str(values.get("messageencoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise BindingConfigError(f"{where}.messageEncoding must be 'base64' or 'none', not {encoding!r}")
        return cls(batch_size, threshold, polling, visibility, max_dequeue_count, encoding)


@dataclass(frozen=True)
class HostJson:
    route_prefix: str
    queues: QueuesOptions

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> HostJson:
        if "retry" in document:
            raise BindingConfigError(
                "host.json retry: the local host does not implement host-level retry policies; "
                "give the function its own with @app.retry(...)"
            )
        extensions = document.get("extensions", {})
        prefix = extensions.get("http", {}).get("routePrefix", DEFAULT_ROUTE_PREFIX)
        queues = QueuesOptions.from_section(extensions.get("queues", {}))
        return cls(route_prefix=str(prefix), queues=queues)


def read_host_json(path: Path) -> HostJson:
    return HostJson.from_document(json.loads(path.read_text()))


def _integer(values: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = values.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BindingConfigError(f"{where}: {key} must be an integer, not {value!r}")
    try:
        return int(value)
    except ValueError:
        raise BindingConfigError(f"{where}: {key} must be an integer, not {value!r}") from None


def _timespan(values: Mapping[str, Any], key: str, default: float, where: str) -> float:
    if key not in values:
        return default
    value = values[key]
    match = _TIMESPAN.match(value) if isinstance(value, str) else None
    if match is None:
        raise BindingConfigError(
            f"{where}: {key} must be a TimeSpan such as '00:00:02' (a bare number would be days), not {value!r}"
        )
    days, hours, minutes, seconds, fraction = match.groups()
    if int(hours) > 23 or int(minutes) > 59 or int(seconds or 0) > 59:
        raise BindingConfigError(f"{where}: {key} is not a valid TimeSpan: {value!r}")
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds or 0)
    return total + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)
