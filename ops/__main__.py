"""Operators' commands, run against the account the settings name (the environment, as the app reads it):

python -m ops rebuild-views     rewrite every view from the assignments while the projector keeps running
python -m ops projection-lag    how many assignments the views are behind on, and the oldest such change
python -m ops replay-poison     move the retry queue's poisoned messages back to it, to be tried again
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from core.bootstrap import get_runtime
from core.services.projection import projection_lag, rebuild


def _rebuild() -> dict[str, object]:
    result = rebuild(get_runtime().feed_deps())
    return {"assignments": result.assignments, "written": result.written, "removed": result.removed}


def _lag() -> dict[str, object]:
    lag = projection_lag(get_runtime().feed_deps())
    age = None if lag.oldest_change is None else (datetime.now(UTC) - lag.oldest_change).total_seconds()
    return {"assignments": lag.assignments, "behind": lag.behind, "oldestChangeAgeSeconds": age}


def _replay() -> dict[str, object]:
    """Poisoned messages go back to the retry queue as they were (still base64), so the queue trigger
    takes them again with a fresh dequeue count."""
    settings = get_runtime().settings
    if not settings.azure_web_jobs_storage:
        raise SystemExit("replay-poison needs AzureWebJobsStorage (a connection string)")
    name = settings.changes_retry_queue
    poison = QueueClient.from_connection_string(settings.azure_web_jobs_storage, f"{name}-poison")
    retry = QueueClient.from_connection_string(settings.azure_web_jobs_storage, name)
    moved = 0
    try:
        for message in poison.receive_messages(messages_per_page=32, visibility_timeout=60):
            retry.send_message(message.content)
            poison.delete_message(message)
            moved += 1
    except ResourceNotFoundError:
        # The poison queue is created by the first message that fails for good: none has.
        pass
    return {"queue": name, "replayed": moved}


COMMANDS = {"rebuild-views": _rebuild, "projection-lag": _lag, "replay-poison": _replay}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    print(json.dumps(COMMANDS[args.command](), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
