"""Run trials: in this process, in local worker processes, or on Ray.

Every executor takes picklable (module-level) callables keyed by trial id and hands back one `Outcome`
per task: "ok" with the return value, "error" when the function raised, "lost" when the process running
it died (SIGKILL, out-of-memory killer, segfault). Results come back to the driver only, so the driver is
the one writer of the study database. No torch import here: the engine runs any Python callable.

    >>> with get_executor("process", workers=2) as ex:
    ...     ex.submit(0, pow, 2, 10)
    ...     ex.wait()
    [(0, Outcome(kind='ok', result=1024, error='', traceback=''))]
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import pickle
import re
import signal
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait as _mp_wait
from typing import Any, Callable

from nas.errors import NasError

OK, ERROR, LOST = "ok", "error", "lost"

# Seconds a worker gets to exit after SIGTERM before SIGKILL. Short: shutdown means "stop now".
_TERM_GRACE_S = 2.0
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class Outcome:
    kind: str  # OK | ERROR | LOST
    result: Any = None  # the function's return value when kind == OK
    error: str = ""  # one line: "ValueError: ..." or "worker lost: killed by SIGKILL"
    traceback: str = ""


class Executor:
    """Base class: `submit` tasks, `wait` for finished ones, `shutdown` when done (or use `with`)."""

    capacity: int = 1

    def submit(self, key: int, fn: Callable, *args, **kwargs) -> None:
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> list[tuple[int, Outcome]]:
        raise NotImplementedError

    def running(self) -> set[int]:
        raise NotImplementedError

    def shutdown(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
        return False


def _one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split())  # a multi-line message would break one-line CLI and DB output
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _error_outcome(exc: BaseException) -> Outcome:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return Outcome(ERROR, error=_one_line(exc), traceback=tb)


def _default_threads(workers: int) -> int:
    # The cores this process may use, not the machine's: containers and taskset pin us to fewer.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // workers)


def _set_threads(threads: int) -> None:
    """Limit intra-op threads in a worker: env vars for libraries not loaded yet, torch if it is."""
    for name in _THREAD_ENV:
        os.environ[name] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)  # a previous task may have changed it


def _check_workers(workers: int) -> None:
    if not isinstance(workers, int) or workers < 1:
        raise NasError(f"workers must be a whole number >= 1, got {workers!r}")


# ---------------------------------------------------------------- in process


class InProcessExecutor(Executor):
    """Runs each task in the calling process when `wait` is called; one at a time.

    Good for debugging (breakpoints work) and for a single trial that uses every core itself.
    `wait` ignores `timeout`: a running task cannot be interrupted.
    """

    capacity = 1

    def __init__(self):
        self._queue: deque[tuple[int, Callable, tuple, dict]] = deque()

    def submit(self, key, fn, *args, **kwargs):
        self._queue.append((key, fn, args, kwargs))

    def wait(self, timeout=None):
        if not self._queue:
            return []
        key, fn, args, kwargs = self._queue.popleft()
        try:
            return [(key, Outcome(OK, result=fn(*args, **kwargs)))]
        except Exception as exc:  # KeyboardInterrupt and SystemExit propagate on purpose
            return [(key, _error_outcome(exc))]

    def running(self):
        return {key for key, *_ in self._queue}

    def shutdown(self):
        self._queue.clear()


# ---------------------------------------------------------------- local processes


def _watch_parent() -> None:
    """Exit this worker as soon as the driver dies, even mid-task, so a killed driver leaves no orphans."""
    parent = mp.parent_process()
    if parent is None:
        return

    def watch():
        _mp_wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="nas-parent-watch", daemon=True).start()


def _worker_main(conn, threads: int) -> None:
    """Worker loop: receive (key, pickled task), run it, send back (key, kind, result, error, traceback)."""
    # Ctrl-C in a terminal reaches the whole process group; the driver handles it and shuts us down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _set_threads(threads)
    _watch_parent()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the driver closed our pipe: shutdown
            return
        if message is None:
            return
        key, payload = message
        _set_threads(threads)
        try:
            fn, args, kwargs = pickle.loads(payload)
            reply = (key, OK, fn(*args, **kwargs), "", "")
        except Exception as exc:
            out = _error_outcome(exc)
            reply = (key, ERROR, None, out.error, out.traceback)
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
        except Exception as exc:  # the result itself does not pickle
            out = _error_outcome(exc)
            conn.send((key, ERROR, None, f"cannot send the result back: {out.error}", out.traceback))


# Serialises the brief os.environ change around Process.start (see _Worker.__init__).
_SPAWN_ENV_LOCK = threading.Lock()


class _Worker:
    def __init__(self, ctx, threads: int, index: int):
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker_main, args=(child_conn, threads), name=f"nas-worker-{index}", daemon=True
        )
        self.key: int | None = None  # the task it runs, None when idle
        # A spawned child imports the driver's __main__ (which may import torch) before our target runs,
        # so the thread limits must already be in its environment when it starts.
        with _SPAWN_ENV_LOCK:
            saved = {name: os.environ.get(name) for name in _THREAD_ENV}
            os.environ.update({name: str(threads) for name in _THREAD_ENV})
            try:
                self.process.start()
            finally:
                for name, value in saved.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value
        child_conn.close()

    def exit_reason(self) -> str:
        self.process.join(timeout=_TERM_GRACE_S)
        code = self.process.exitcode
        if code is None:  # the pipe broke but the process lingers: finish it
            self.process.kill()
            self.process.join()
            return "its pipe closed unexpectedly"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with code {code}"

    def stop(self) -> None:
        self.conn.close()
        if self.process.is_alive():
            self.process.terminate()


class ProcessExecutor(Executor):
    """K long-lived local worker processes ("spawn" context), one pipe each.

    A worker that dies mid-task gives a "lost" outcome and is replaced. Each worker limits its intra-op
    threads to `threads_per_worker` (default: usable cores // workers) so K workers do not oversubscribe.
    Tasks submitted beyond `capacity` wait in a queue and count as running.
    """

    def __init__(self, *, workers: int = 1, threads_per_worker: int | None = None):
        _check_workers(workers)
        if threads_per_worker is not None:
            _check_workers(threads_per_worker)
        self.capacity = workers
        self.threads_per_worker = threads_per_worker or _default_threads(workers)
        self._ctx = mp.get_context("spawn")  # fork is unsafe once torch or any threads exist
        self._pending: deque[tuple[int, bytes]] = deque()
        self._ready: list[tuple[int, Outcome]] = []  # outcomes known at submit time (unpicklable task)
        self._closed = False
        self._workers: list[_Worker] = []
        try:
            for i in range(workers):
                self._workers.append(self._new_worker(i))
        except BaseException:
            self.shutdown()
            raise

    def _new_worker(self, index: int) -> _Worker:
        return _Worker(self._ctx, self.threads_per_worker, index)

    def submit(self, key, fn, *args, **kwargs):
        if self._closed:
            raise RuntimeError("this executor is shut down; create a new one")
        if key in self.running():
            raise ValueError(f"task {key} is already running")
        try:
            payload = pickle.dumps((fn, args, kwargs))
        except Exception as exc:  # a lambda or closure: fail this task, not the search
            out = _error_outcome(exc)
            out.error = f"cannot send the task to a worker (use a module-level function): {out.error}"
            self._ready.append((key, out))
            return
        self._pending.append((key, payload))
        self._dispatch()

    def _replace(self, i: int) -> tuple[_Worker, str]:
        """Reap worker i (killing it if it lingers) and start a fresh one in its place."""
        old = self._workers[i]
        old.conn.close()
        reason = old.exit_reason()
        old.process.close()
        self._workers[i] = self._new_worker(i)
        return self._workers[i], reason

    def _dispatch(self) -> None:
        for i in range(len(self._workers)):
            if not self._pending:
                return
            worker = self._workers[i]
            if worker.key is not None:
                continue
            if not worker.process.is_alive():  # died while idle (e.g. the OOM killer picked it)
                worker, _ = self._replace(i)
            key, payload = self._pending[0]
            try:
                worker.conn.send((key, payload))
            except (OSError, EOFError):  # died between the check and the send
                worker, _ = self._replace(i)
                worker.conn.send((key, payload))
            worker.key = key
            self._pending.popleft()

    def _collect(self, i: int) -> tuple[int, Outcome]:
        """Read the finished (or dead) worker i's outcome; replace the worker if it died."""
        worker = self._workers[i]
        key = worker.key
        if worker.conn.poll():
            try:
                rkey, kind, result, error, tb = worker.conn.recv()
            except (EOFError, OSError):
                pass  # died while (or instead of) writing: lost
            except Exception as exc:  # the result does not unpickle in the driver
                worker.key = None
                out = _error_outcome(exc)
                return key, Outcome(ERROR, error=f"cannot read the result: {out.error}", traceback=out.traceback)
            else:
                worker.key = None
                return rkey, Outcome(kind, result=result, error=error, traceback=tb)
        _, reason = self._replace(i)
        return key, Outcome(LOST, error=f"worker lost: {reason}")

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        done, self._ready = self._ready, []
        while not done and not self._closed:
            self._dispatch()
            busy = [i for i, w in enumerate(self._workers) if w.key is not None]
            if not busy:
                break
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            watched = {}
            for i in busy:
                watched[self._workers[i].conn] = i
                watched[self._workers[i].process.sentinel] = i
            ready = _mp_wait(list(watched), remaining)
            for i in sorted({watched[obj] for obj in ready}):
                done.append(self._collect(i))
            if not done and deadline is not None and time.monotonic() >= deadline:
                break
        if not self._closed:
            self._dispatch()
        return done

    def running(self):
        keys = {w.key for w in self._workers if w.key is not None}
        return keys | {key for key, _ in self._pending} | {key for key, _ in self._ready}

    def shutdown(self):
        if self._closed:
            return
        self._closed = True
        self._pending.clear()
        self._ready.clear()
        for worker in self._workers:
            worker.stop()
        deadline = time.monotonic() + _TERM_GRACE_S
        for worker in self._workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():  # ignored SIGTERM
                worker.process.kill()
                worker.process.join()
            worker.process.close()
        self._workers = []


# ---------------------------------------------------------------- Ray


def _ray_call(fn, threads, args, kwargs):
    """Runs inside a Ray worker. Ray reuses workers, so the thread limit is set for every task."""
    _set_threads(threads)
    return fn(*args, **kwargs)


# Ray errors that mean the process or node running the task went away, not that the task raised.
_RAY_LOST = (
    "WorkerCrashedError",
    "NodeDiedError",
    "TaskCancelledError",
    "LocalRayletDiedError",
    "OutOfMemoryError",
    "ObjectLostError",
    "OwnerDiedError",
    "ActorDiedError",
)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class RayExecutor(Executor):
    """Ray tasks, at most `workers` at once, each asking for `resources` (num_cpus, num_gpus, memory, custom).

    With no `address` and no Ray running, starts a local Ray with workers x num_cpus CPUs (no dashboard)
    and stops it on shutdown; a Ray that was already running, or a cluster, is left up. Tasks submitted
    beyond `capacity` wait here, not in Ray, and count as running.
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        workers: int = 1,
        resources: dict | None = None,
        threads_per_worker: int | None = None,
    ):
        _check_workers(workers)
        try:
            import ray
        except ImportError as exc:
            raise NasError("the ray executor needs `pip install lightnas[ray]`") from exc
        self._ray = ray
        self.capacity = workers
        resources = dict(resources or {"num_cpus": 1, "num_gpus": 0})
        options = {
            "num_cpus": resources.pop("num_cpus", 1),
            "num_gpus": resources.pop("num_gpus", 0),
            "max_retries": 0,
        }  # a lost trial is the study's decision to rerun, not Ray's
        if "memory" in resources:
            options["memory"] = resources.pop("memory")
        if resources:
            options["resources"] = resources
        self.threads_per_worker = threads_per_worker or max(1, int(options["num_cpus"]))
        self._started = False
        if not ray.is_initialized():
            init = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            try:
                if address:
                    ray.init(address=address, **init)
                else:  # room for `workers` tasks of the requested size at once
                    ray.init(num_cpus=max(workers, math.ceil(workers * options["num_cpus"])), **init)
            except ConnectionError as exc:
                raise NasError(
                    f"cannot connect to Ray at {address!r} ({exc}); start it with "
                    "`ray start --head` or leave the address out for a local Ray"
                ) from exc
            self._started = True
        self._remote = ray.remote(_ray_call).options(**options)
        self._refs: dict[Any, int] = {}  # ObjectRef -> key, tasks handed to Ray
        self._pending: deque[tuple[int, Callable, tuple, dict]] = deque()
        self._closed = False

    def submit(self, key, fn, *args, **kwargs):
        if self._closed:
            raise RuntimeError("this executor is shut down; create a new one")
        if key in self.running():
            raise ValueError(f"task {key} is already running")
        self._pending.append((key, fn, args, kwargs))
        self._dispatch()

    def _dispatch(self) -> None:
        # Hold tasks back beyond capacity, so `workers` bounds the load we put on a shared cluster.
        while self._pending and len(self._refs) < self.capacity:
            key, fn, args, kwargs = self._pending.popleft()
            self._refs[self._remote.remote(fn, self.threads_per_worker, args, kwargs)] = key

    def _outcome(self, ref) -> Outcome:
        exceptions = self._ray.exceptions
        try:
            return Outcome(OK, result=self._ray.get(ref))
        except exceptions.RayTaskError as exc:
            cause = exc.cause if exc.cause is not None else exc
            name = type(cause).__name__
            if name in _RAY_LOST:
                return Outcome(LOST, error=f"worker lost: {_one_line(cause)}")
            # str() of the error Ray raises is the remote traceback (its traceback_str attribute is
            # not kept on the exception that subclasses the user's type), with colour codes.
            return Outcome(ERROR, error=_one_line(cause), traceback=_ANSI.sub("", str(exc)))
        except exceptions.RayError as exc:
            if type(exc).__name__ in _RAY_LOST:
                return Outcome(LOST, error=f"worker lost: {_one_line(exc)}")
            return _error_outcome(exc)
        except Exception as exc:  # e.g. the result does not deserialise in the driver
            return _error_outcome(exc)

    def wait(self, timeout=None):
        if self._closed:
            return []
        self._dispatch()
        if not self._refs:
            return []
        refs = list(self._refs)
        ready, _ = self._ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:  # pick up everything else that is already finished too
            ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        done = [(self._refs.pop(ref), self._outcome(ref)) for ref in ready]
        self._dispatch()
        return done

    def running(self):
        return set(self._refs.values()) | {key for key, *_ in self._pending}

    def shutdown(self):
        if self._closed:
            return
        self._closed = True
        self._pending.clear()
        for ref in self._refs:
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # already finished, or Ray is going down anyway
                pass
        self._refs.clear()
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()


# ---------------------------------------------------------------- registry


def _inprocess(*, workers, threads_per_worker, ray_address, resources):
    if workers != 1:
        raise NasError(
            f"the inprocess executor runs one trial at a time, got workers={workers}; "
            "use the process or ray executor for parallel trials"
        )
    return InProcessExecutor()


def _process(*, workers, threads_per_worker, ray_address, resources):
    return ProcessExecutor(workers=workers, threads_per_worker=threads_per_worker)


def _ray_executor(*, workers, threads_per_worker, ray_address, resources):
    return RayExecutor(address=ray_address, workers=workers, resources=resources, threads_per_worker=threads_per_worker)


EXECUTORS: dict[str, Callable[..., Executor]] = {"inprocess": _inprocess, "process": _process, "ray": _ray_executor}


def get_executor(
    name: str,
    *,
    workers: int = 1,
    threads_per_worker: int | None = None,
    ray_address: str | None = None,
    resources: dict | None = None,
) -> Executor:
    """The executor called `name` ("inprocess", "process" or "ray")."""
    if name not in EXECUTORS:
        raise NasError(f"unknown executor {name!r}; choose one of: {', '.join(EXECUTORS)}")
    return EXECUTORS[name](
        workers=workers, threads_per_worker=threads_per_worker, ray_address=ray_address, resources=resources
    )
