"""The same CPU budget for each benchmarked node: a CFS quota in a control group of its own.

``bench.cluster --node-quota 0.45`` gives every chat node 45% of one core
(the kernel's CFS bandwidth control: at most 4.5 ms of CPU in every 10 ms),
so that one node and each of two nodes have a core of the same size, and
what is left of a two-core machine runs the load generator, Redis and
PostgreSQL without starving a node.  Needs root and the ``cpu`` controller,
of cgroup v2 (``cpu.max``) or v1 (``cpu.cfs_quota_us``).
"""

from __future__ import annotations

import os
from pathlib import Path

V2_ROOT = Path("/sys/fs/cgroup")
V1_ROOT = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 10_000
"""The quota's period: short, so a node out of budget waits at most a few ms, not 100."""


class QuotaUnavailable(RuntimeError):
    """No control group with a CPU quota can be made here (not root, or no ``cpu`` controller)."""


def _root() -> tuple[Path, int]:
    """Where CPU control groups are made, and the cgroup version."""
    controllers = V2_ROOT / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return V2_ROOT, 2
    if (V1_ROOT / "cpu.cfs_quota_us").exists():
        return V1_ROOT, 1
    raise QuotaUnavailable("no cpu controller under /sys/fs/cgroup (cgroup v2 cpu.max or v1 cpu.cfs_quota_us)")


class CPUQuota:
    """A control group whose processes share ``fraction`` of one core.

    :param name: the group's directory name (unique: the benchmark's pid in it).
    :param fraction: of one core, e.g. ``0.45``.
    """

    def __init__(self, name: str, fraction: float) -> None:
        if not 0.01 <= fraction <= 64:
            raise ValueError(f"a CPU quota of {fraction} cores makes no sense")
        root, self.version = _root()
        self.path = root / name
        quota = round(fraction * PERIOD_US)
        try:
            if self.version == 2:
                subtree = root / "cgroup.subtree_control"
                if "cpu" not in subtree.read_text().split():
                    subtree.write_text("+cpu")
                self.path.mkdir()
                (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
            else:
                self.path.mkdir()
                (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        except OSError as e:
            raise QuotaUnavailable(f"cannot make {self.path} with a CPU quota: {e}") from e

    def add(self, pid: int) -> None:
        """Put process ``pid`` (all its threads) in the group."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def throttled(self) -> dict[str, float]:
        """How often the group ran out of its budget, and for how long in all (seconds)."""
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines() if line.strip())
        if self.version == 2:
            return {"periods": int(stat.get("nr_throttled", 0)), "seconds": int(stat.get("throttled_usec", 0)) / 1e6}
        return {"periods": int(stat.get("nr_throttled", 0)), "seconds": int(stat.get("throttled_time", 0)) / 1e9}

    def remove(self) -> None:
        """Remove the group (its processes must have ended; the group is left if not)."""
        try:
            os.rmdir(self.path)
        except OSError:
            pass
