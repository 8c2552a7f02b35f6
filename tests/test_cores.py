"""Threads for the machine as it is (``backends/cores``): the cores this process may use (affinity, physical cores, the
cgroup's quota), less those other processes keep busy, at least one. Every file it reads is a fake one here, so no
test depends on what the machine runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_sql.backends import cores
from edge_sql.backends.cores import Cores, Follower, Snapshot, cgroup_quota, read_cores, usable_cores

HYPER_THREADED = "".join(f"processor : {cpu}\nphysical id : 0\ncore id : {cpu // 2}\n\n" for cpu in range(8))
V2_MOUNT = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNTS = ("32 31 0:29 {root} /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
             "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n")


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def stat(*cpus: tuple[int, int]) -> str:
    """/proc/stat with each CPU's (busy, idle) ticks."""
    lines = [f"cpu  {sum(b for b, _ in cpus)} 0 0 {sum(i for _, i in cpus)} 0 0 0 0 0 0"]
    lines += [f"cpu{n} {busy} 0 0 {idle} 0 0 0 0 0 0" for n, (busy, idle) in enumerate(cpus)]
    return "\n".join(lines) + "\nintr 1 2 3\nctxt 99\n"


# --- the cores this process may use -----------------------------------------------------------------------------------


def test_one_thread_per_physical_core_of_the_cpus_this_process_may_use(tmp_path):
    root = write(tmp_path, {"proc/cpuinfo": HYPER_THREADED})
    assert usable_cores(root=root, cpus=set(range(8))) == 4  # 8 hyper-threads on 4 cores
    assert usable_cores(root=root, cpus={0, 1}) == 2  # taskset to two of them
    assert usable_cores(root=tmp_path / "nothing", cpus={0, 1, 2}) == 3  # no cpuinfo: every CPU counts


def test_a_cgroup_v2_quota_limits_the_cores_rounded_down(tmp_path):
    root = write(tmp_path, {
        "proc/self/cgroup": "0::/user.slice/app.scope\n",
        "proc/self/mountinfo": V2_MOUNT,
        "sys/fs/cgroup/user.slice/app.scope/cpu.max": "150000 100000\n",
        "sys/fs/cgroup/user.slice/cpu.max": "max 100000\n",
    })
    assert cgroup_quota(root=root) == 1.5
    assert usable_cores(root=root, cpus=set(range(4))) == 1


def test_the_smallest_quota_on_the_way_up_counts(tmp_path):
    root = write(tmp_path, {
        "proc/self/cgroup": "0::/a/b\n",
        "proc/self/mountinfo": V2_MOUNT,
        "sys/fs/cgroup/a/b/cpu.max": "max 100000\n",
        "sys/fs/cgroup/a/cpu.max": "300000 100000\n",
        "sys/fs/cgroup/cpu.max": "max\n",
    })
    assert cgroup_quota(root=root) == 3.0


def test_a_cgroup_v1_quota_in_a_container_that_sees_only_its_own_cgroup(tmp_path):
    root = write(tmp_path, {
        "proc/self/cgroup": "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n",
        "proc/self/mountinfo": V1_MOUNTS.format(root="/docker/abc"),
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "200000\n",
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    })
    assert cgroup_quota(root=root) == 2.0


def test_no_quota_when_v1_says_minus_one_or_nothing_can_be_read(tmp_path):
    root = write(tmp_path, {
        "proc/self/cgroup": "1:cpu:/\n0::/\n",
        "proc/self/mountinfo": V1_MOUNTS.format(root="/").replace("cpu,cpuacct rw,relatime", "cpu rw,relatime"),
        "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
        "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
    })
    assert cgroup_quota(root=root) is None
    assert cgroup_quota(root=tmp_path / "nothing") is None


# --- cores other processes keep busy ----------------------------------------------------------------------------------


def sampled(root: Path, before: str, after: str, cpus: set[int]) -> Cores:
    """read_cores over a window in which /proc/stat goes from ``before`` to ``after``."""
    write(root, {"proc/stat": before})
    return read_cores(root=root, cpus=cpus, window=0.1, wait=lambda seconds: write(root, {"proc/stat": after}))


def test_a_core_another_process_keeps_busy_leaves_one_thread(tmp_path):
    # 10 ticks pass on each CPU; another process is busy on cpu1 all the time, cpu0 is idle
    reading = sampled(tmp_path, stat((100, 900), (500, 500)), stat((100, 910), (510, 500)), {0, 1})
    assert reading.usable == 2 and reading.busy == pytest.approx(1.0, abs=0.05)
    assert (reading.threads, reading.note) == (1, "1 of 2 cores busy")


def test_a_little_background_noise_takes_no_thread(tmp_path):
    reading = sampled(tmp_path, stat((100, 900), (500, 500)), stat((101, 909), (501, 509)), {0, 1})
    assert reading.busy == pytest.approx(0.2, abs=0.05)  # a fifth of a core, on two
    assert (reading.threads, reading.note) == (2, "")


def test_every_core_busy_still_leaves_one_thread(tmp_path):
    reading = sampled(tmp_path, stat((0, 0), (0, 0)), stat((10, 0), (10, 0)), {0, 1})
    assert (reading.taken, reading.threads, reading.note) == (2, 1, "2 of 2 cores busy")


def test_only_the_cpus_this_process_may_use_are_watched(tmp_path):
    # cpu2 is busy, but this process runs on cpus 0 and 1 only
    reading = sampled(tmp_path, stat((0, 0), (0, 0), (0, 0)), stat((0, 10), (0, 10), (10, 0)), {0, 1})
    assert (reading.usable, reading.threads) == (2, 2)


def test_this_process_own_time_is_not_another_process_load():
    before, after = Snapshot(busy=0, total=0, cpus=2, own=1.0), Snapshot(busy=20, total=40, cpus=2, own=1.2)
    assert cores.others_busy(before, after, ticks=100) == 0.0  # all 20 busy ticks were its own 0.2 s


def test_measured_from_the_commands_start_nobody_waits(tmp_path):
    write(tmp_path, {"proc/stat": stat((100, 880), (500, 500))})
    start = cores.snapshot({0, 1}, root=tmp_path)  # the command marked its start (cores.mark) 0.3 s ago
    write(tmp_path, {"proc/stat": stat((100, 910), (530, 500))})  # since then another process kept cpu1 busy
    waited = []
    reading = read_cores(root=tmp_path, cpus={0, 1}, window=0.1, wait=waited.append, before=start, waited=0.3)
    assert (reading.threads, reading.note, waited) == (1, "1 of 2 cores busy", [])
    read_cores(root=tmp_path, cpus={0, 1}, window=0.1, wait=waited.append, before=start, waited=0.04)
    assert waited == [pytest.approx(0.06)]  # marked just now: only the rest of the window


def test_the_first_reading_after_the_mark_measures_from_it_and_the_mark_is_used_once(tmp_path, monkeypatch):
    write(tmp_path, {"proc/stat": stat((100, 900), (500, 500))})
    monkeypatch.setattr(cores, "ROOT", tmp_path)
    monkeypatch.setattr(cores, "affinity", lambda: {0, 1})
    now = [10.0]
    cores.mark(clock=lambda: now[0])
    write(tmp_path, {"proc/stat": stat((100, 930), (530, 500))})  # cpu1 busy for the 0.3 s the options took
    now[0] += 0.3
    monkeypatch.setattr(cores.time, "sleep", lambda seconds: pytest.fail("no wait after the mark"))
    assert cores.free_cores(clock=lambda: now[0]).threads == 1
    assert cores._mark is None


def test_too_short_a_window_tells_nothing_and_takes_nothing():
    assert cores.others_busy(Snapshot(0, 0, 2, 0.0), Snapshot(2, 4, 2, 0.0), ticks=100) is None
    assert Cores(usable=2, busy=None).threads == 2


def test_without_proc_stat_every_usable_core_is_free(tmp_path):
    waited = []
    reading = read_cores(root=tmp_path, cpus={0, 1, 2}, window=0.1, wait=waited.append)
    assert (reading, waited) == (Cores(usable=3, busy=None), [])  # nothing to sample: no wait either


def test_a_reading_is_kept_for_the_next_model_then_read_again(monkeypatch):
    readings = iter([Cores(2, 1.0), Cores(2, 0.0)])
    monkeypatch.setattr(cores, "read_cores", lambda: next(readings))
    now = [100.0]
    assert cores.free_cores(clock=lambda: now[0]).threads == 1
    now[0] += 1.0
    assert cores.free_cores(clock=lambda: now[0]).threads == 1  # the same reading: the notice and the model agree
    now[0] += cores.KEEP + 1
    assert cores.free_cores(clock=lambda: now[0]).threads == 2


def test_a_worker_process_of_this_one_is_not_another_process(tmp_path):
    ticks = __import__("os").sysconf("SC_CLK_TCK")
    root = write(tmp_path, {
        "proc/self/task/7/children": "8 9",
        "proc/self/task/70/children": "",
        "proc/8/stat": f"8 (python3 -c x (y)) S 7 8 8 0 -1 0 0 0 0 0 {ticks} {ticks} {ticks} 0 20 0 1 0",
        # 9 has ended: no stat
    })
    assert cores.children_seconds(root) == 3.0  # its user, system, and its own children's user time


# --- following the machine while a model runs -------------------------------------------------------------------------


class Machine:
    """Snapshots of a machine on which others' load is set by the test; this process decodes on 2 threads."""

    def __init__(self):
        self.busy = self.total = 0
        self.own = 0.0
        self.others = 0.0  # cores' worth of others' time from now on
        self.now = 0.0

    def run(self, seconds: float, decoding: bool = True) -> None:
        """2 CPUs at 100 ticks a second; while decoding, this process takes what others leave."""
        ours = 2 - self.others if decoding else 0.0
        self.busy += round((ours + self.others) * seconds * 100)
        self.total += round(2 * seconds * 100)
        self.own += ours * seconds
        self.now += seconds

    def snap(self) -> Snapshot:
        return Snapshot(self.busy, self.total, 2, self.own)


def test_a_follower_takes_a_thread_back_and_gives_it_again():
    machine = Machine()
    follower = Follower(Cores(2, 0.0), read=lambda: pytest.fail("not stale"), snap=machine.snap,
                        clock=lambda: machine.now)
    assert follower.threads() == 2
    machine.others = 1.0  # a busy loop starts while the model decodes
    machine.run(3.0)
    follower.done()
    assert follower.threads() == 1
    machine.others = 0.0  # it ends
    machine.run(3.0)
    follower.done()
    assert follower.threads() == 2


def test_after_a_long_pause_a_follower_reads_the_machine_afresh():
    machine, fresh = Machine(), []
    follower = Follower(Cores(2, 0.0), read=lambda: fresh.append(1) or Cores(2, 1.0), snap=machine.snap,
                        clock=lambda: machine.now)
    machine.run(1.0)
    follower.threads(), follower.done()
    machine.now += cores.STALE + 1  # the shell waits for its user
    assert follower.threads() == 1 and fresh == [1]


def test_a_load_that_starts_while_the_user_reads_the_answer_counts_for_the_next_question():
    machine = Machine()
    follower = Follower(Cores(2, 0.0), snap=machine.snap, clock=lambda: machine.now)
    assert follower.threads() == 2
    machine.run(2.0)
    follower.done()
    machine.others = 1.0  # a build starts in another terminal
    machine.run(3.0, decoding=False)
    assert follower.threads() == 1


def test_a_load_that_starts_halfway_through_an_answer_takes_a_thread_before_the_answer_ends():
    machine = Machine()
    follower = Follower(Cores(2, 0.0), read=lambda: pytest.fail("not stale"), snap=machine.snap,
                        clock=lambda: machine.now)
    assert follower.threads() == 2
    machine.run(0.3)
    assert follower.during() == 2
    machine.others = 1.0  # a build starts in another terminal while the model decodes
    machine.run(0.1)
    assert follower.during() == 2  # not looked at yet: a look every MIDWAY seconds
    machine.run(cores.MIDWAY)
    assert follower.during() == 1
    machine.others = 0.0  # the build ends before the answer does
    machine.run(cores.MIDWAY + 0.1)
    assert follower.during() == 2


def test_a_load_that_starts_while_the_model_loads_counts_for_the_first_question():
    machine = Machine()
    follower = Follower(Cores(2, 0.0), read=lambda: pytest.fail("not stale"), snap=machine.snap,
                        clock=lambda: machine.now)
    machine.others = 1.0  # a build starts while the weights are read and the prompt is built
    machine.run(0.5, decoding=False)
    assert follower.threads() == 1


def test_a_sampling_too_short_to_measure_keeps_the_last_reading():
    machine = Machine()
    follower = Follower(Cores(2, 1.0), snap=machine.snap, clock=lambda: machine.now)
    assert follower.threads() == 1
    machine.run(0.01)
    follower.done()
    assert follower.threads() == 1


# --- a llama.cpp model follows the machine unless its threads are pinned ---------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from fixtures.tiny_gguf import write_tiny_gguf

    return write_tiny_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf", context=2048)


def decode_once(model) -> list[str]:
    return [c.text for c in model.sample("<|im_start|>user\nHow many?<|im_end|>\n", [0.0, 0.8], seed=1,
                                         max_tokens=4, stop=("<|im_end|>",))]


def llama_threads(model) -> int:
    import llama_cpp

    return llama_cpp.llama_n_threads(model.decoder().ctx)


def test_a_model_loaded_on_a_busy_machine_gives_its_threads_back_when_the_load_ends(tiny, tmp_path, monkeypatch):
    from edge_sql.backends.llama import LlamaModel

    monkeypatch.setattr(cores, "read_cores", lambda: Cores(usable=2, busy=1.0))
    model = LlamaModel(tiny, threads=None, cache_dir=tmp_path)
    assert model.threads == 1
    before = decode_once(model)
    assert llama_threads(model) == 1
    model.follower.reading = Cores(usable=2, busy=0.0)  # what a quiet sampling measures
    assert decode_once(model) == before  # the same candidates on more threads
    assert model.threads == llama_threads(model) == 2


def test_a_model_changes_its_threads_between_two_decodes_of_one_sampling(tiny, tmp_path, monkeypatch):
    from edge_sql.backends.llama import LlamaModel

    monkeypatch.setattr(cores, "read_cores", lambda: Cores(usable=2, busy=0.0))
    model = LlamaModel(tiny, threads=None, cache_dir=tmp_path)
    before = decode_once(model)
    looks = []
    model.follower.during = lambda: looks.append(1) or 1  # what a look finds once a build has started
    assert decode_once(model) == before
    assert looks and model.threads == llama_threads(model) == 1


def test_a_decode_held_up_on_two_threads_is_stopped_and_done_again_on_one(tiny, tmp_path, monkeypatch, capfd):
    import llama_cpp

    from edge_sql.backends.llama import LlamaModel

    monkeypatch.setattr(cores, "read_cores", lambda: Cores(usable=2, busy=0.0))
    model = LlamaModel(tiny, threads=None, cache_dir=tmp_path)
    before = decode_once(model)
    looks = iter([2] * 10 + [1] * 100_000)  # a build starts while llama.cpp computes the prompt's graph
    model.follower.during = lambda: next(looks)
    statuses, decode = [], llama_cpp.llama_decode
    monkeypatch.setattr(llama_cpp, "llama_decode", lambda *args: statuses.append(decode(*args)) or statuses[-1])
    capfd.readouterr()
    assert decode_once(model) == before  # nothing of the stopped decode is kept
    assert statuses[:2] == [2, 0]  # stopped (llama.cpp's "aborted"), then done again
    assert model.threads == llama_threads(model) == 1
    assert capfd.readouterr().err == ""  # llama.cpp's line about the stopped decode is not printed


def test_pinned_threads_stay_pinned(tiny, tmp_path, monkeypatch):
    from edge_sql.backends.llama import LlamaModel

    monkeypatch.setattr(cores, "read_cores", lambda: Cores(usable=2, busy=1.0))
    model = LlamaModel(tiny, threads=2, cache_dir=tmp_path)
    decode_once(model)
    assert model.follower is None and model.threads == llama_threads(model) == 2
