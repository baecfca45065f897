"""The worker pool: tasks run on processes (or threads) with a bounded window, results in input
order, and a pool that restarts when a worker process dies on a hostile file."""
from __future__ import annotations

import numpy as np

from fastlenet import _engine, prepare
from fastlenet.fields import map_members, members
from fastlenet.pipeline.tasks import _decode_task, _Done, _worker_init

POOLS = ("process", "thread")


def workers_and_pool(workers, pool):
    """The workers= and pool= of predict_files and read_fields, checked: (count, kind)."""
    if workers is None:
        workers = _engine.DEFAULT_THREADS
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ValueError(f"workers: expected a non-negative integer or None; got {workers!r}")
    pool = pool or "process"
    if pool not in POOLS:
        raise ValueError(f"pool: expected one of {', '.join(POOLS)}; got {pool!r}")
    return int(workers), pool


def worker_copy(net):
    """What process workers compute with: a one-thread copy of net (its ISA kept), a tuple of
    them for a tuple of Nets (fields), or None when a Net is a subclass: its overrides
    (methods, state, side effects in this process) would not travel with a copy, so it runs
    here, as the caller's object."""
    if any(type(n) is not _engine.Net for n in members(net)):
        return None

    def copy(n):
        c = _engine.Net(n.weights, n.meta, num_threads=1)
        c.isa = n.isa
        return c
    return map_members(net, copy)


def _make_pool(kind: str, workers: int, net=None):
    """A process pool (whose workers classify with `net`, a one-thread Net or a tuple of them
    for fields, if given) or a thread pool."""
    import concurrent.futures as cf
    import multiprocessing as mp

    if kind == "process" and not mp.current_process().daemon:  # daemons (Dask) cannot fork
        method = _start_method()
        ctx = mp.get_context(method)
        # Pillow and its PNG/JPEG plugins imported once, before the workers start, rather than
        # in each worker (measured: 40 ms of CPU per worker, 4 us per image of a 10,000-file run)
        if method == "fork":
            try:
                from fastlenet.io import decode

                decode._pillow()
                decode._direct_plugins()
            except ImportError:
                pass
        elif method == "forkserver":
            ctx.set_forkserver_preload(["fastlenet.io.decode", "PIL.Image", "PIL.PngImagePlugin",
                                        "PIL.JpegImagePlugin"])
        return cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                      initargs=(net, None if net is None else
                                                tuple(n.isa for n in members(net))))
    return cf.ThreadPoolExecutor(workers, thread_name_prefix="fastlenet-decode")


def _start_method() -> str:
    """How decode workers start: fork where it is the default and safe (Linux, Python < 3.12:
    no copy of the caller's modules to import or pickle), else forkserver, or spawn on
    Windows."""
    import sys

    if sys.platform.startswith("linux") and sys.version_info < (3, 12):
        return "fork"
    return "forkserver" if sys.platform != "win32" else "spawn"


class _Pool:
    """The decode pool, restarted when a worker process dies (a crash in an image library on
    a hostile file): the chunks in flight are redone, the one that was running item by item,
    so that only the item that kills a worker again becomes an error."""

    def __init__(self, kind: str, workers: int, cfg: prepare.Settings, net=None):
        self.kind, self.workers, self.cfg, self.net = kind, workers, cfg, net
        self.pool = _make_pool(kind, workers, net)

    def submit(self, kind, items):
        return self.pool.submit(_decode_task, kind, items, self.cfg)

    def result(self, fut, kind, items):
        from concurrent.futures.process import BrokenProcessPool

        try:
            return fut.result()
        except BrokenProcessPool:
            pass
        self.restart()
        parts, errors, scored = [], [], False
        for item in items:  # one at a time: find the item that kills a worker
            for attempt in (0, 1):
                try:
                    x, err, scored = self.submit(kind, [item]).result()
                    break
                except BrokenProcessPool:
                    self.restart()
                    if attempt:
                        x, err = None, ["a decode worker process died reading this input "
                                        "(a crash in the image library?)"]
            errors += err
            if x is not None and len(x):
                parts.append(x)
        if parts:
            if isinstance(parts[0], list):  # decoded images or fields
                return [v for part in parts for v in part], errors, scored
            return np.concatenate(parts), errors, scored
        return None, errors, False

    def restart(self):
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.pool = _make_pool(self.kind, self.workers, self.net)

    def shutdown(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


def _ordered(units, cfg: prepare.Settings, workers: int, pool_kind: str, state: dict, net=None):
    """Units -> (names, out, errors, scored) in input order (see _decode_task); tasks run on a
    pool with a bounded window (2 per worker), started only when there is more than one task
    to run; `net` (one thread), if given, classifies in a process pool's workers.
    state["pool"] tells the caller whether a pool is running."""
    from collections import deque

    pool = None
    window: deque = deque()  # (names, future or _Done, kind, items)
    limit = 2 * max(1, workers) + 1
    it = iter(units)
    unit = next(it, None)

    def result(names, fut, kind, items):
        if isinstance(fut, _Done):
            x, errors, scored = fut.result()
        else:
            x, errors, scored = pool.result(fut, kind, items)
            if pool.pool is not fut_pool[0]:  # restarted: resubmit what was in flight
                fut_pool[0] = pool.pool
                for k, (n, f, kd, its) in enumerate(window):
                    if not isinstance(f, _Done):
                        window[k] = (n, pool.submit(kd, its), kd, its)
        return names, x, errors, scored

    fut_pool = [None]
    try:
        while unit is not None:
            nxt = next(it, None)
            if unit[0] == "done":
                window.append((unit[1], _Done((unit[2], unit[3], False)), None, None))
            else:
                _, kind, names, items = unit
                if pool is None and workers > 0 and nxt is not None:
                    pool = _Pool(pool_kind, workers, cfg, net)
                    fut_pool[0] = pool.pool
                    state["pool"] = True
                if pool is None:
                    window.append((names, _Done(_decode_task(kind, items, cfg)), kind, items))
                else:
                    window.append((names, pool.submit(kind, items), kind, items))
            while len(window) > limit or (window and isinstance(window[0][1], _Done)
                                          and len(window) > 1 and pool is None):
                yield result(*window.popleft())
            unit = nxt
        while window:
            yield result(*window.popleft())
    finally:
        state["pool"] = False
        if pool is not None:
            for _, fut, _, _ in window:
                if not isinstance(fut, _Done):
                    fut.cancel()
            pool.shutdown()
