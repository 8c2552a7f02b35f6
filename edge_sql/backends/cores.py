"""How many threads a model runs on: one per core this process may use that other processes leave free.

llama.cpp's threads (OpenMP) meet at every step of a decode and spin while they wait. A thread that shares its core
with another busy process is put aside by the scheduler, and the rest spin until it comes back. Measured on 2 cores
(issue 26), an ``ask`` with a vote of 5 took 4.7 s on 2 threads alone but 12.3 s beside one busy core, where 1 thread
took 6.4 s; beside another llama.cpp process, 44.6 s against 6.9 s. So when nothing pins it (``--threads``, the config
file's ``threads``), the thread count is what :func:`read_cores` finds:

* the CPUs this process may run on (``os.sched_getaffinity``), at most one per physical core (a hyper-thread adds
  nothing to llama.cpp),
* at most its cgroup's CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), rounded down,
* less the cores other processes keep busy: their CPU time on those CPUs over a short sample of ``/proc/stat``
  (:data:`WINDOW`), this process's own time taken out. Another llama.cpp or edgesql process at work shows there like
  any other load; an idle one (a shell waiting for its next question) takes nothing and leaves its cores free. The load
  average is not used: it is a minute old and counts this process too.
* at least 1.

A command marks its start (:func:`mark`): the first reading measures from there, so nobody waits for the sample.
A reading is kept for a few seconds (:func:`free_cores`), so the line that names the model and the model itself see
the same machine. While a model runs, a :class:`Follower` keeps its thread count in step with the machine: as each
sampling starts it measures the pause since the last one (a shell's user reading the answer, an eval checking it),
else takes what the last sampling measured (other processes' time while this one decoded), and reads the machine
afresh after a long pause (the average of a long wait says little about now); while a sampling runs it looks again
every :data:`MIDWAY` seconds (a build started in another terminal halfway through an answer). This process's own
time, its worker processes' included (the database's), is never counted as another's.

>>> Cores(usable=2, busy=0.1).threads, Cores(usable=2, busy=0.9).threads, Cores(usable=2, busy=1.9).threads
(2, 1, 1)
>>> Cores(usable=2, busy=0.9).note
'1 of 2 cores busy'
>>> Cores(usable=8).threads, Cores(usable=8).note   # not measured: every usable core
(8, '')
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

#: Where /proc and /sys are read (tests point it at a tree of fake files).
ROOT = Path("/")
#: Seconds /proc/stat is sampled for when a model loads (0: not sampled, every usable core counts as free).
WINDOW = 0.1
#: Cores' worth of other processes' time that does not make a core busy (daemons, a terminal, a clock).
NOISE = 0.25
#: Seconds a reading stays good for another model loaded soon after (:func:`free_cores`).
KEEP = 3.0
#: Seconds after the last sampling ended beyond which a :class:`Follower` reads the machine afresh.
STALE = 10.0
#: The shortest stretch, in seconds, whose CPU time says something about the load (/proc/stat counts hundredths).
SHORTEST = 0.05
#: The shortest pause between two samplings that a :class:`Follower` measures (a shorter one is mostly noise).
PAUSE = 0.2
#: Seconds between two looks at the machine while a sampling runs (:meth:`Follower.during`).
MIDWAY = 0.5


@dataclass(frozen=True)
class Cores:
    """The cores this process may use (``usable``) and how many cores' worth of time other processes took on them
    when measured (``busy``; None when not measured)."""

    usable: int
    busy: float | None = None

    @property
    def taken(self) -> int:
        """Cores counted busy: each started beyond :data:`NOISE` counts whole (a thread that shares a core waits).

        >>> [Cores(4, busy).taken for busy in (None, 0.2, 0.3, 1.0, 1.3, 9.0)]
        [0, 0, 1, 1, 2, 4]
        """
        if self.busy is None or self.busy <= NOISE:
            return 0
        return min(self.usable, math.ceil(self.busy - NOISE))

    @property
    def threads(self) -> int:
        return max(1, self.usable - self.taken)

    @property
    def note(self) -> str:
        """What took threads away, in a few words ("" when nothing did)."""
        return f"{self.taken} of {self.usable} cores busy" if self.taken else ""


def read_cores(*, root: Path | None = None, cpus: set[int] | None = None, window: float | None = None,
               wait: Callable[[float], None] = time.sleep, before: Snapshot | None = None,
               waited: float = 0.0) -> Cores:
    """The machine as it is now: :func:`usable_cores`, and other processes' time on ``cpus`` (this process's
    affinity) over ``window`` seconds (:data:`WINDOW`), or since ``before``, a snapshot taken ``waited`` seconds ago
    (only what is left of the window is waited for)."""
    root = ROOT if root is None else root
    cpus = affinity() if cpus is None else cpus
    window = WINDOW if window is None else window
    usable = usable_cores(root=root, cpus=cpus)
    if before is None or window <= 0:
        before, waited = snapshot(cpus, root=root) if window > 0 else None, 0.0
    if before is None:
        return Cores(usable)
    if waited < window:
        wait(window - waited)
    after = snapshot(cpus, root=root)
    return Cores(usable, None if after is None else others_busy(before, after))


_last: tuple[float, Cores] | None = None
_mark: tuple[float, Snapshot] | None = None


def mark(*, clock: Callable[[], float] = time.monotonic) -> None:
    """Begin measuring the machine as a command starts: the first :func:`free_cores` measures from here (within
    :data:`STALE` seconds) and waits only for what is left of :data:`WINDOW` (by then, none: the imports and the
    options took longer, and they are this process's own time, never counted as another's)."""
    global _mark
    before = snapshot(affinity()) if WINDOW > 0 else None
    _mark = None if before is None else (clock(), before)


def free_cores(*, clock: Callable[[], float] = time.monotonic) -> Cores:
    """:func:`read_cores` (from the :func:`mark`, if any), or the reading taken less than :data:`KEEP` seconds ago
    (the notice on stderr and the model that loads just after it agree, and a second model loaded beside the first
    costs no new sample)."""
    global _last, _mark
    now = clock()
    if _last is None or now - _last[0] > KEEP:
        marked, _mark = _mark, None
        if marked is not None and now - marked[0] <= STALE:
            _last = (now, read_cores(before=marked[1], waited=now - marked[0]))
        else:
            _last = (now, read_cores())
    return _last[1]


def forget() -> None:
    """Drop the kept reading and the mark: the next :func:`free_cores` reads the machine."""
    global _last, _mark
    _last = _mark = None


def affinity() -> set[int]:
    """The CPUs this process may run on."""
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return set(range(os.cpu_count() or 1))


def usable_cores(*, root: Path | None = None, cpus: set[int] | None = None) -> int:
    """The CPUs in ``cpus``, at most one per physical core, at most the cgroup quota (rounded down), at least 1."""
    root = ROOT if root is None else root
    usable = len(affinity() if cpus is None else cpus)
    try:
        physical = physical_cores((root / "proc/cpuinfo").read_text())
    except OSError:
        physical = 0
    if physical:
        usable = min(usable, physical)
    quota = cgroup_quota(root=root)
    if quota is not None:
        usable = min(usable, int(quota))
    return max(1, usable)


def physical_cores(cpuinfo: str | None = None) -> int:
    r"""Distinct (package, core) pairs in /proc/cpuinfo; 0 when it cannot tell.

    >>> physical_cores("physical id : 0\ncore id : 0\n\nphysical id : 0\ncore id : 0\n\nphysical id : 0\ncore id : 1\n")
    2
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return 0
    cores, package = set(), None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            package = value.strip()
        elif key == "core id":
            cores.add((package, value.strip()))
    return len(cores)


# --- the cgroup's CPU quota -------------------------------------------------------------------------------------------


def cgroup_quota(*, root: Path | None = None) -> float | None:
    """The CPU quota of this process's cgroup in cores: the smallest on the way from its own cgroup up to the top of
    the hierarchy the system mounted (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``);
    None when there is none or it cannot be read."""
    root = ROOT if root is None else root
    try:
        groups = (root / "proc/self/cgroup").read_text().splitlines()
        mounts = (root / "proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    paths = {}
    for line in groups:  # "0::/user.slice" (v2), "4:cpu,cpuacct:/docker/abc" (v1)
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                paths[controller] = parts[2]
    quotas = []
    for line in mounts:
        fields, _, tail = line.partition(" - ")
        fields, tail = fields.split(), tail.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        mounted, point, kind, options = fields[3], fields[4], tail[0], tail[2].split(",")
        if kind == "cgroup2" and "" in paths:
            read, path = quota_v2, paths[""]
        elif kind == "cgroup" and "cpu" in options and "cpu" in paths:
            read, path = quota_v1, paths["cpu"]
        else:
            continue
        top = root / point.lstrip("/")
        # The path is from the top of the hierarchy; the mount may show only part of it (a container's namespace).
        inside = path[len(mounted):] if path.startswith(mounted) else ""
        folder = top / inside.strip("/")
        while True:
            quota = read(folder)
            if quota is not None:
                quotas.append(quota)
            if folder == top or top not in folder.parents:
                break
            folder = folder.parent
    return min(quotas) if quotas else None


def quota_v2(folder: Path) -> float | None:
    try:
        limit, _, period = (folder / "cpu.max").read_text().strip().partition(" ")
        return None if limit == "max" else int(limit) / int(period or 100000)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def quota_v1(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError, ZeroDivisionError):
        return None


# --- other processes' CPU time ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """CPU time so far: ``busy`` and ``total`` clock ticks of the watched CPUs (every process's), ``cpus`` how many
    they are, ``own`` the CPU seconds this process and its child processes have used (all their threads)."""

    busy: int
    total: int
    cpus: int
    own: float


def snapshot(cpus: set[int], *, root: Path | None = None, own: float | None = None) -> Snapshot | None:
    """The CPU time of ``cpus`` from /proc/stat (all CPUs when none of them is listed there); None if unreadable."""
    root = ROOT if root is None else root
    try:
        text = (root / "proc/stat").read_text()
    except OSError:
        return None
    own = time.process_time() + children_seconds(root) if own is None else own
    return stat_snapshot(text, cpus, own)


def children_seconds(root: Path | None = None) -> float:
    """CPU seconds this process's running child processes have used, theirs and their own children's (a database
    worker answers between two samplings: its time is this process's, not another's)."""
    root = ROOT if root is None else root
    ticks, total = os.sysconf("SC_CLK_TCK"), 0
    try:
        tasks = list((root / "proc/self/task").iterdir())
    except OSError:
        return 0.0
    for task in tasks:
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for pid in children:
            try:  # after the command (which may hold spaces and parentheses): state, ppid, ... utime (14) to cstime (17)
                fields = (root / "proc" / pid / "stat").read_text().rpartition(")")[2].split()
                total += sum(int(value) for value in fields[11:15])
            except (OSError, ValueError):
                continue
    return total / ticks


def stat_snapshot(text: str, cpus: set[int], own: float) -> Snapshot | None:
    """The ticks of ``cpus`` in the text of /proc/stat: busy is user, nice, system, irq, softirq and steal (time the
    hypervisor gave to others), total adds idle and iowait.

    >>> stat_snapshot("cpu  9 0 9 9 0 0 0 0 0 0\\ncpu0 5 0 1 90 4 0 0 0 0 0\\ncpu1 50 0 0 50 0 0 0 0 0 0\\n", {1}, 0.0)
    Snapshot(busy=50, total=100, cpus=1, own=0.0)
    """
    lines = {}
    for line in text.splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and len(values) >= 5:
            numbers = [int(value) for value in values[:8]] + [0] * (8 - min(8, len(values)))
            lines[int(name[3:])] = numbers
    watched = [lines[cpu] for cpu in sorted(cpus) if cpu in lines] or list(lines.values())
    if not watched:
        return None
    busy = sum(user + nice + system + irq + softirq + steal
               for user, nice, system, idle, iowait, irq, softirq, steal in watched)
    total = busy + sum(numbers[3] + numbers[4] for numbers in watched)
    return Snapshot(busy, total, len(watched), own)


def others_busy(before: Snapshot, after: Snapshot, ticks: int | None = None) -> float | None:
    """Cores' worth of CPU time other processes used on the watched CPUs between two snapshots; None when too little
    time passed to tell (``ticks``: clock ticks a second, ``SC_CLK_TCK``).

    >>> others_busy(Snapshot(0, 0, 2, 0.0), Snapshot(30, 40, 2, 0.1), ticks=100)  # 0.3 s busy, 0.1 s ours, in 0.2 s
    1.0
    """
    ticks = ticks or os.sysconf("SC_CLK_TCK")
    elapsed = (after.total - before.total) / max(1, before.cpus)  # ticks of wall time
    if elapsed < SHORTEST * ticks:
        return None
    others = (after.busy - before.busy) - (after.own - before.own) * ticks
    return round(max(0.0, others / elapsed), 2)


class Follower:
    """Keeps a model's thread count in step with the machine while it runs.

    :meth:`threads` as a sampling starts: the count measured over the pause since the last sampling ended, or since
    the follower began for the first (when it lasted at least :data:`PAUSE` seconds), else over the last sampling
    (other processes' time while this one decoded), or a fresh :func:`read_cores` after a pause of more than
    :data:`STALE` seconds. :meth:`during` while it runs (between two decodes), :meth:`done` as it ends.
    """

    def __init__(self, reading: Cores, *, read: Callable[[], Cores] = read_cores,
                 snap: Callable[[], Snapshot | None] | None = None, clock: Callable[[], float] = time.monotonic):
        self.reading, self.read = reading, read
        self.snap = snap or (lambda: snapshot(affinity()))
        self.clock = clock
        self.since = clock()  # when the reading was taken
        self.start: Snapshot | None = None  # as the sampling under way started, or was last looked at
        self.looked = 0.0  # when that was
        # as the last sampling ended (or this follower began: a load that starts while the model loads and the
        # prompt is built counts for the first sampling), and when
        first = self.snap()
        self.end: tuple[float, Snapshot] | None = None if first is None else (self.since, first)

    def threads(self) -> int:
        now, start = self.clock(), self.snap()
        if now - self.since > STALE:
            self.reading, self.since = self.read(), self.clock()
            start = self.snap()
        elif self.end is not None and now - self.end[0] >= PAUSE:
            self.measure(self.end[1], start, now)
        self.start, self.end, self.looked = start, None, self.clock()
        return self.reading.threads

    def during(self) -> int:
        """The count while a sampling runs: every :data:`MIDWAY` seconds, other processes' time since the last look
        (one that got busy, or went quiet, mid-answer); in between, the last count (a look costs a read of /proc)."""
        now = self.clock()
        if self.start is None or now - self.looked < MIDWAY:
            return self.reading.threads
        look = self.snap()
        self.measure(self.start, look, now)
        self.start, self.looked = look or self.start, now
        return self.reading.threads

    def done(self) -> None:
        now, end = self.clock(), self.snap()
        self.measure(self.start, end, now)
        self.start, self.end = None, None if end is None else (now, end)

    def measure(self, before: Snapshot | None, after: Snapshot | None, now: float) -> None:
        """Keep the reading of other processes' time between two snapshots (none when either is missing, or too
        little time passed to tell)."""
        busy = None if before is None or after is None else others_busy(before, after)
        if busy is not None:
            self.reading, self.since = Cores(self.reading.usable, busy), now
