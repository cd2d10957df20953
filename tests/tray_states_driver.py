"""Show the real tray icon (`traywire.desktop.trayicon.Tray` on pystray) in a
given health x preference state, for the Xvfb screenshot test.

    python tests/tray_states_driver.py

Reads commands on stdin, one per line: ``show HEALTH PREFERENCE`` posts a
snapshot in which the tray's health is HEALTH (healthy, degraded, failing) and
the routing preference is PREFERENCE; the answer (one line on stdout) is
``SHOWN {"state", "badge"}`` once the UI thread has applied it. ``quit`` ends.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from traywire.desktop import trayicon
from traywire.desktop.tray import Snapshot, Topology, freeze

# Two local backends and one cloud one; the route "chat" can use each.
_TOPOLOGY = Topology(
    routes=freeze({"chat": ("m_local", "m_other", "m_cloud")}),
    models=freeze(
        {"m_local": ("local", "l"), "m_other": ("other", "o"), "m_cloud": ("cloud", "c")}
    ),
)


def snapshot(health: str, preference: str) -> Snapshot:
    """A running proxy whose icon shows ``health`` under ``preference``."""
    down: set[str] = set()
    if health == "degraded":
        # one backend down, the route still served under any preference
        down = {"other"}
    elif health == "failing":
        down = {"local", "other", "cloud"}
    backends = {
        name: {
            "kind": "openai",
            "location": "cloud" if name == "cloud" else "local",
            "health": "down" if name in down else "up",
            "in_flight": 0,
            "capacity": 4,
        }
        for name in ("local", "other", "cloud")
    }
    status = {"backends": backends, "preference": preference, "active": {}}
    return Snapshot(
        running=True, url="http://127.0.0.1:8484", status=freeze(status), topology=_TOPOLOGY
    )


def main() -> int:
    tray = trayicon.Tray(lambda _cmd: None, snapshot("healthy", "auto"))

    def serve() -> None:
        for line in sys.stdin:
            parts = line.split()
            if parts[:1] == ["show"] and len(parts) == 3:
                tray.post(snapshot(parts[1], parts[2]))
                done = threading.Event()
                answer: dict[str, Any] = {}

                def read(answer: dict[str, Any] = answer, done: threading.Event = done) -> None:
                    answer.update(state=tray.shown.state, badge=tray.shown.badge)
                    done.set()

                tray.call_on_main(read)  # after the update posted before it
                done.wait(10)
                print("SHOWN " + json.dumps(answer), flush=True)
            elif parts[:1] == ["quit"]:
                tray.stop()
                return

    def ready() -> None:
        threading.Thread(target=serve, daemon=True).start()
        print("READY", flush=True)

    tray.run(ready)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
