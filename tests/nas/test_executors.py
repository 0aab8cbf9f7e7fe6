"""Executors with real processes and a real local Ray (2 CPUs, started once for the module)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nas.errors import NasError
from nas.executors import ERROR, LOST, OK, InProcessExecutor, Outcome, ProcessExecutor, get_executor, _default_threads

pytestmark = pytest.mark.timeout(120)  # a hung worker must fail the test, not the whole run
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- tasks (module-level: they are pickled)


def square(x):
    return x * x


def sleep_then(x, seconds):
    time.sleep(seconds)
    return x


def fail(message):
    raise ValueError(message)


def interrupt():
    raise KeyboardInterrupt


def report_pid_and_sleep(path, seconds):
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def thread_env():
    return os.environ.get("OMP_NUM_THREADS"), os.environ.get("MKL_NUM_THREADS")


def torch_threads_then_change_them():
    import torch

    seen = torch.get_num_threads()
    torch.set_num_threads(3)  # the next task must not inherit this
    return seen, os.environ.get("OMP_NUM_THREADS")


def torch_threads():
    import torch

    return torch.get_num_threads()


# ---------------------------------------------------------------- helpers


def drain(ex, deadline_s=90.0) -> dict[int, Outcome]:
    """Wait until nothing runs; every outcome by key (and no key twice). The deadline only catches a hang: a
    Ray task on a loaded 2-core machine took over 30 s to come back (make test beside two benchmark workers)."""
    out: dict[int, Outcome] = {}
    end = time.monotonic() + deadline_s
    while ex.running():
        assert time.monotonic() < end, f"still running: {ex.running()}"
        for key, outcome in ex.wait(timeout=max(0.1, end - time.monotonic())):
            assert key not in out
            out[key] = outcome
    return out


def read_pid(path: Path, timeout=30.0) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.02)
    raise AssertionError(f"the task never wrote {path}")


def alive(pid: int) -> bool:
    """True for a running process; False once gone or a zombie (its parent's reaping is not ours to test)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def children_of(pid: int) -> set[int]:
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.add(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            pass  # exited while we looked
    return kids


def wait_dead(pids, timeout=10.0) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


# ---------------------------------------------------------------- shared executors


@pytest.fixture(scope="module")
def process_ex():
    with ProcessExecutor(workers=2) as ex:
        yield ex


@pytest.fixture(scope="module")
def ray_ex():
    """The module's one Ray: started by the executor itself, so its teardown also tests ray.shutdown()."""
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized(), "another test left Ray running"
    # Ray workers import by module name from the driver's cwd and script folder, where pytest's
    # rootdir-less test modules are not: ship this module's tasks by value instead.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ex = get_executor("ray", workers=2)
    yield ex
    # Ray's raylet, GCS, ... are our children; so are the process executor's workers and multiprocessing's
    # resource tracker (it lives as long as this process), which are not Ray's.
    ray_processes = {
        pid
        for pid in children_of(os.getpid()) - {p.pid for p in mp.active_children()}
        if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    }
    assert ray_processes
    ex.shutdown()
    assert not ray.is_initialized()
    assert wait_dead(ray_processes) == []
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(params=["process", "ray"])
def ex(request):
    return request.getfixturevalue(f"{request.param}_ex")


# ---------------------------------------------------------------- both parallel executors


def test_results_come_back_under_their_keys(ex):
    assert ex.capacity == 2
    for key in range(5):  # more than capacity: the rest queue
        ex.submit(key, square, key + 10)
    assert ex.running() == set(range(5))
    got = drain(ex)
    assert {k: o.kind for k, o in got.items()} == {k: OK for k in range(5)}
    assert {k: o.result for k, o in got.items()} == {k: (k + 10) ** 2 for k in range(5)}
    assert ex.running() == set() and ex.wait(timeout=1) == []


def test_error_becomes_an_error_outcome_and_the_executor_keeps_working(ex):
    ex.submit(1, fail, "bad\ninput 7")
    ex.submit(2, square, 3)
    got = drain(ex)
    assert got[1].kind == ERROR
    assert got[1].error == "ValueError: bad input 7"  # one line, the original type and message
    assert "fail" in got[1].traceback and "ValueError" in got[1].traceback
    assert got[2] == Outcome(OK, result=9)
    ex.submit(3, square, 4)
    assert drain(ex)[3].result == 16


def test_wait_returns_as_soon_as_one_task_finishes(ex):
    drain(ex)
    ex.submit(1, sleep_then, "slow", 3.0)
    ex.submit(2, sleep_then, "fast", 0.1)
    start = time.monotonic()
    first = ex.wait(timeout=20)
    assert [(k, o.result) for k, o in first] == [(2, "fast")]
    assert time.monotonic() - start < 2.5  # well before the slow task could end
    assert ex.running() == {1}
    start = time.monotonic()
    assert ex.wait(timeout=0.2) == []  # the timeout is honoured while the slow one runs
    assert time.monotonic() - start < 1.5
    assert [(k, o.result) for k, o in drain(ex).items()] == [(1, "slow")]


def test_killed_worker_gives_a_lost_outcome_and_work_goes_on(ex, tmp_path):
    drain(ex)
    pid_file = tmp_path / "pid"
    ex.submit(7, report_pid_and_sleep, str(pid_file), 60)
    ex.submit(8, sleep_then, "neighbour", 0.5)  # the other worker is not disturbed
    pid = read_pid(pid_file)
    os.kill(pid, signal.SIGKILL)
    got = drain(ex)
    assert got[7].kind == LOST and got[7].error.startswith("worker lost:")
    assert got[8] == Outcome(OK, result="neighbour")
    ex.submit(9, report_pid_and_sleep, str(tmp_path / "pid2"), 0)
    after = drain(ex)[9]
    assert after.kind == OK and after.result != pid


# ---------------------------------------------------------------- process executor specifics


def test_process_lost_message_names_the_signal(process_ex, tmp_path):
    process_ex.submit(1, report_pid_and_sleep, str(tmp_path / "pid"), 60)
    os.kill(read_pid(tmp_path / "pid"), signal.SIGKILL)
    assert drain(process_ex)[1] == Outcome(LOST, error="worker lost: killed by SIGKILL")
    assert len(process_ex._workers) == 2 and all(w.process.is_alive() for w in process_ex._workers)


def test_process_default_threads_split_the_cores(process_ex):
    assert process_ex.threads_per_worker == _default_threads(2) == max(1, len(os.sched_getaffinity(0)) // 2)
    for key in range(2):
        process_ex.submit(key, thread_env)
    expected = (str(process_ex.threads_per_worker),) * 2
    assert [o.result for o in drain(process_ex).values()] == [expected, expected]


def test_process_threads_per_worker_reaches_torch():
    pytest.importorskip("torch")
    before = os.environ.get("OMP_NUM_THREADS")
    with ProcessExecutor(workers=1, threads_per_worker=1) as ex:
        assert os.environ.get("OMP_NUM_THREADS") == before
        ex.submit(1, torch_threads_then_change_them)
        ex.submit(2, torch_threads)
        got = drain(ex)
    assert got[1].result == (1, "1")
    assert got[2].result == 1  # reset although task 1 set 3


def test_unpicklable_task_fails_alone(process_ex):
    process_ex.submit(1, lambda: 1)
    process_ex.submit(2, square, 5)
    got = drain(process_ex)
    assert got[1].kind == ERROR and "module-level function" in got[1].error
    assert got[2].result == 25


def test_shutdown_kills_running_work_and_leaves_no_children(tmp_path):
    ex = ProcessExecutor(workers=2)
    pids = [w.process.pid for w in ex._workers]
    ex.submit(1, report_pid_and_sleep, str(tmp_path / "pid"), 60)
    assert read_pid(tmp_path / "pid") in pids
    start = time.monotonic()
    ex.shutdown()
    assert time.monotonic() - start < 5
    assert wait_dead(pids, timeout=1) == []
    assert not set(pids) & {p.pid for p in mp.active_children()}
    ex.shutdown()  # idempotent
    assert ex.running() == set() and ex.wait() == []
    with pytest.raises(RuntimeError, match="shut down"):
        ex.submit(2, square, 1)


DRIVER = textwrap.dedent("""
    import multiprocessing as mp, time
    from nas.executors import ProcessExecutor
    if __name__ == "__main__":
        with ProcessExecutor(workers=2) as ex:
            ex.submit(0, time.sleep, 60)
            ex.submit(1, time.sleep, 60)
            print(" ".join(str(p.pid) for p in mp.active_children()), flush=True)
            ex.wait()
""")


@pytest.mark.parametrize("how", ["ctrl_c", "driver_killed"])
def test_no_orphans_when_the_driver_is_interrupted(tmp_path, how):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # Its own session, so a "Ctrl-C" can go to the driver's whole process group as a terminal would send it.
    driver = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
        text=True,
    )
    pids: list[int] = []
    try:
        pids = [int(p) for p in driver.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(p) for p in pids)
        time.sleep(1.0)  # let the workers start their tasks
        if how == "ctrl_c":
            os.killpg(driver.pid, signal.SIGINT)
        else:
            os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=15)
        assert wait_dead(pids) == []
        if how == "ctrl_c":
            assert "KeyboardInterrupt" in driver.stderr.read()
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        for pid in filter(alive, pids):  # a failed run must not leave its orphans behind
            os.kill(pid, signal.SIGKILL)
        driver.stdout.close()
        driver.stderr.close()


# ---------------------------------------------------------------- ray specifics


def test_ray_threads_and_a_shared_instance_left_running(ray_ex, tmp_path):
    import ray

    ex = get_executor("ray", workers=2, threads_per_worker=2)  # joins the running Ray
    ex.submit(1, thread_env)
    assert drain(ex)[1].result == ("2", "2")
    ex.submit(2, report_pid_and_sleep, str(tmp_path / "pid"), 60)
    pid = read_pid(tmp_path / "pid")
    ex.shutdown()  # cancels the running task by force...
    assert wait_dead([pid], timeout=15) == []
    assert ray.is_initialized()  # ...but leaves a Ray it did not start
    ray_ex.submit(3, square, 6)
    assert drain(ray_ex)[3].result == 36


# ---------------------------------------------------------------- in-process and the registry


def test_inprocess_runs_in_this_process():
    with get_executor("inprocess") as ex:
        assert ex.capacity == 1 and ex.wait() == []
        ex.submit(1, os.getpid)
        ex.submit(2, fail, "nope")
        assert ex.running() == {1, 2}
        assert ex.wait() == [(1, Outcome(OK, result=os.getpid()))]
        [(key, outcome)] = ex.wait()
        assert key == 2 and outcome.kind == ERROR and outcome.error == "ValueError: nope"
        ex.submit(3, interrupt)
        with pytest.raises(KeyboardInterrupt):
            ex.wait()
        ex.submit(4, square, 2)
        assert ex.wait() == [(4, Outcome(OK, result=4))]


def test_get_executor_rejects_bad_names_and_sizes(monkeypatch):
    with pytest.raises(NasError, match="unknown executor 'threads'; choose one of: inprocess, process, ray"):
        get_executor("threads")
    with pytest.raises(NasError, match="process or ray executor"):
        get_executor("inprocess", workers=2)
    with pytest.raises(NasError, match="workers must be"):
        get_executor("process", workers=0)
    assert isinstance(get_executor("inprocess"), InProcessExecutor)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    with pytest.raises(NasError, match=r"pip install lightnas\[ray\]"):
        get_executor("ray", workers=2)
