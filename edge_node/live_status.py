"""What `harbour edge status` shows: the running node's own view when one runs on the data directory, else
what can be read from disk (and it says which, and why).

The node knows what the disk does not -- the link's state, its measured rate and round trip, the last error
in words, what is in flight and the time the backlog will take -- so the command asks it first, at the
address the node wrote into its lock file (``dir_lock``).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .dir_lock import RUN_COMMAND, running_holder, this_host
from .release import node_url
from .runner import offline_status

ASK_TIMEOUT_SECONDS = 5.0
"""The node answers /v1/status from memory in milliseconds; five seconds is a node too busy to be asked."""


def current_status(data_dir: Path, clock: Callable[[], float]) -> dict[str, Any]:
    """The status report, with ``source``: ``"node"`` (the running node answered) or ``"disk"`` with ``why``."""
    holder = running_holder(data_dir)
    if holder is None or holder.command != RUN_COMMAND:
        why = f"no node is running on {data_dir}"
    elif holder.host != this_host():
        why = f"the node runs on {holder.host}; ask it there"
    elif not holder.listen:
        why = "the node is starting up"
    else:
        url = node_url(holder.listen)
        try:
            with urllib.request.urlopen(url + "/v1/status", timeout=ASK_TIMEOUT_SECONDS) as answer:
                report = json.loads(answer.read())
            return {**report, "source": "node", "node": url}
        except (OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            why = f"the running node at {url} did not answer ({reason})"
    return {**offline_status(data_dir, clock), "source": "disk", "why": why}

