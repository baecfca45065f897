"""fastlenet on a Dask cluster: arrays and file lists, the Net sent to each worker once.

    from fastlenet import dask as fldask
    labels = fldask.predict_array(x)                    # dask (N, 32, 32) -> dask (N,) int64
    df = fldask.predict_files(["scans/", "shards/*.tar"])  # dask DataFrame, one row per input
    df.to_parquet("results.parquet")                    # writing out is plain Dask

Needs `pip install "fastlenet[dask]"`. Works on whatever scheduler is active: a
`distributed.Client` (a cluster), or Dask's local threads when there is none.

How the Net travels. Pickled, a Net is about 250 KB. It enters the graph once, as one key named
by a hash of its pickled bytes (``fastlenet-net-<token>``); every task names that key instead of
carrying the Net, so a task's own payload stays a few hundred bytes. The scheduler ships the key
to each worker that needs it (once; peers copy it from each other), and when the worker holding
it dies it is simply recomputed from the graph, unlike a scattered future, which would be lost.
On the worker, the Net is unpickled once per process and kept in a small cache keyed by that
token, so every task of every job with the same weights reuses one engine.

Thread policy. Dask already runs one task per worker thread; an engine that also used every core
in each task would run (worker threads x cores) threads on the cores. So each task's engine uses
``OMP_NUM_THREADS`` threads when the environment sets it (the nanny sets it to 1 by default; set
``distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS`` to give a 1-thread worker more cores),
else 1: one engine thread per Dask worker thread. ``threads=`` overrides it per call. The
engine's results are bit-identical for any thread count, so this choice changes speed only.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import threading
from collections import OrderedDict
from typing import List, Optional

import numpy as np

from fastlenet import _engine, models
from fastlenet.io.kinds import is_container
from fastlenet.io.sources import expand
from fastlenet.names import safe_name

__all__ = ["predict_array", "predict_files", "read_fields", "partition_sources", "engine_threads",
           "worker_info", "METHODS"]

METHODS = ("predict", "predict_proba", "logits", "features")
NET_KEY_PREFIX = "fastlenet-net-"
# Files per partition of predict_files: a PNG costs ~0.1 ms to read and classify, so 512 of them
# make a task of tens of ms, far above the ~1 ms a task costs the scheduler, and a million
# files make about 2,000 tasks.
FILES_PER_PARTITION = 512
# Rows per chunk when predict_array is given a NumPy array (see docs/scaling.md: above about
# 4,000 images a chunk, per-task overhead is under 5% of the engine's time).
ARRAY_CHUNK = 16384


def _require_dask():
    try:
        import dask  # noqa: F401
    except ImportError:
        raise ImportError("fastlenet.dask needs Dask: pip install 'fastlenet[dask]'") from None


# ---- the Net as one graph key ---------------------------------------------------------------
class SharedNet:
    """A Net as it travels: its pickled bytes and their hash. Unpickling this is a memcpy; the
    Net itself is rebuilt only by the worker-side cache, once per process and token. auto:
    fp32 Nets that each worker quantizes where its CPU has int8 kernels (the fields default,
    fastlenet.fields.auto_precision), so a mixed cluster runs each machine's fast kernels."""

    __slots__ = ("token", "blob", "auto")

    def __init__(self, token: str, blob: bytes, auto: bool = False):
        self.token, self.blob, self.auto = token, blob, auto

    @classmethod
    def from_net(cls, net, many: bool = False, auto: bool = False) -> "SharedNet":
        """net: a Net, or with many=True a tuple of Nets (the Nets fields are read with)."""
        from fastlenet.fields import map_members, members

        nets = members(net) if many else (net,)
        if not nets or not all(isinstance(n, _engine.Net) for n in nets):
            raise TypeError(f"net: expected a fastlenet.Net (from fastlenet.load or "
                            f"fastlenet.pretrained) or None; got {type(net).__name__}")
        # Weights and metadata only: the client's thread setting (which pickling keeps when set
        # explicitly) is not the worker's, and must not change the content-derived key.
        blob = pickle.dumps(map_members(net, lambda n: _engine.Net(n.weights, n.meta)),
                            protocol=5)
        token = hashlib.blake2b(blob + (b"auto" if auto else b""), digest_size=16).hexdigest()
        return cls(token, blob, auto)

    def __getstate__(self):
        return (self.token, self.blob, self.auto)

    def __setstate__(self, state):
        self.token, self.blob, self.auto = state

    def __repr__(self):
        return f"<fastlenet.dask.SharedNet {self.token} ({len(self.blob):,} bytes)>"


def _net_key(net, many: bool = False, auto: bool = False):
    """(Net, SharedNet, dask Delayed of it under a content-derived key); many, auto: see
    SharedNet."""
    import dask

    net = models.pretrained() if net is None else net
    shared = SharedNet.from_net(net, many, auto)
    return net, shared, dask.delayed(shared, name=NET_KEY_PREFIX + shared.token, pure=True)


# ---- worker side ----------------------------------------------------------------------------
_CACHE_SIZE = 4  # distinct (weights, threads, isa) kept per process; one in the usual job
_cache: "OrderedDict[tuple, object]" = OrderedDict()
_lock = threading.Lock()
_stats = {"nets_loaded": 0, "tasks": 0, "items": 0}


def engine_threads(threads: Optional[int] = None) -> int:
    """Engine threads for one task in this process (see the module docstring): ``threads`` if
    given, else OMP_NUM_THREADS when set (capped by the CPUs this process may use), else 1."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ValueError(f"threads: expected a positive integer or None; got {threads!r}")
        return int(threads)
    omp = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if omp.isdigit() and int(omp) > 0:
        return max(1, min(int(omp), _engine.DEFAULT_THREADS))
    return 1


def _worker_net(shared: SharedNet, threads: Optional[int], isa: Optional[str]):
    """This process's Net for these weights and settings, unpickled on first use."""
    n = engine_threads(threads)
    key = (shared.token, n, isa)
    with _lock:
        net = _cache.get(key)
        if net is not None:
            _cache.move_to_end(key)
            return net
    net = pickle.loads(shared.blob)  # our own bytes from the client, not user input
    from fastlenet.fields import auto_precision, map_members, members

    if shared.auto and auto_precision(isa) == "int8":
        net = map_members(net, lambda m: m.quantize())
    for member in members(net):
        member.num_threads = n  # pickling keeps weights and metadata only
        if isa is not None:
            member.isa = isa
    with _lock:
        _cache[key] = net
        _stats["nets_loaded"] += 1
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return net


def worker_info() -> dict:
    """This process's counters: Nets unpickled, tasks and items run, the cached Nets as
    [token, threads, isa], and the default engine threads per task here.
    On a cluster: ``client.run(fastlenet.dask.worker_info)``."""
    with _lock:
        return dict(_stats, pid=os.getpid(), cached=[list(k) for k in _cache],
                    engine_threads=engine_threads())


def _count(items: int) -> None:
    with _lock:
        _stats["tasks"] += 1
        _stats["items"] += items


def _array_block(block, shared, method, threads, isa):
    net = _worker_net(shared, threads, isa)
    out = getattr(net, method)(block)
    _count(len(out))
    return out


# ---- arrays ---------------------------------------------------------------------------------
def _probe(net, x, method, name="x") -> tuple:
    """The Net's own input rules, checked on the client on an empty batch of x's image shape
    and dtype (so that a bad array fails before any task runs, and whatever inputs the Net
    accepts are accepted here); returns the shape of one image's output, e.g. () or (10,)."""
    shape = tuple(x.shape)
    if x.dtype not in (np.uint8, np.float32, np.float64):
        raise TypeError(f"{name}: expected dtype float32, float64 or uint8; got {x.dtype}. "
                        f"Convert with {name}.astype(np.float32) (or np.uint8 for 0..255 pixels)")
    empty = np.zeros((0,) + shape[1:], x.dtype)
    try:
        if len(shape) < 3:
            raise ValueError(f"expected (N, 32, 32), (N, 1, 32, 32), (N, 32, 32, 1) or the "
                             f"like, one image per row; got shape {empty.shape}")
        return tuple(getattr(net, method)(empty).shape[1:])
    except ValueError as e:
        msg = str(e).replace(f"got shape {empty.shape}", f"got shape {shape}")
        if msg.startswith("x: "):
            msg = msg[3:]
        raise ValueError(f"{name}: a batch of images chunked along N; {msg}") from None


def predict_array(x, net=None, method: str = "predict", *, threads: Optional[int] = None,
                  isa: Optional[str] = None, chunks: Optional[int] = None):
    """Run the Net over a dask array of images, lazily; returns a dask array.

    x: a dask array (N, 32, 32), (N, 28, 28), (N, 1, 32, 32) or (N, 32, 32, 1) of uint8,
    float32 or float64 (the Net's input rules), chunked along N only: each chunk is one task.
    A NumPy array is wrapped with ``chunks`` images per chunk (default ARRAY_CHUNK).
    net: a fastlenet.Net (default fastlenet.pretrained()); it enters the graph once.
    method: "predict" -> int64 (N,); "predict_proba" or "logits" -> float32 (N, K);
    "features" -> float32 (N, 84).
    threads: engine threads per task (default: engine_threads(), one per Dask worker thread).
    isa: the ISA level every worker must use (default: each worker's own best level).
    """
    _require_dask()
    import dask.array as da

    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}; got {method!r}")
    if threads is not None:
        engine_threads(threads)  # validate here, not in a task
    _check_isa(isa)
    if not isinstance(x, da.Array):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x: expected a dask array or a NumPy array of images; got "
                            f"{type(x).__name__}")
        step = ARRAY_CHUNK if chunks is None else int(chunks)
        if step < 1:
            raise ValueError(f"chunks: expected a positive number of images; got {chunks!r}")
        x = da.from_array(x, chunks=(step,) + x.shape[1:])
    elif chunks is not None:
        x = x.rechunk({0: chunks})
    net = models.pretrained() if net is None else net
    if not isinstance(net, _engine.Net):
        SharedNet.from_net(net)  # raises the TypeError that names net
    tail = _probe(net, x, method)
    split = [i for i, c in enumerate(x.chunks[1:], 1) if len(c) > 1]
    if split:
        # Refused rather than rechunked: merging image axes moves every byte between workers,
        # which the caller should choose knowingly.
        raise ValueError(f"x: expected chunks along the first axis (N) only, each image whole; "
                         f"axis {split[0]} is split into chunks {x.chunks[split[0]]}. Rechunk "
                         f"first: x.rechunk({{{', '.join(f'{a}: -1' for a in split)}}})")
    net, shared, key = _net_key(net)
    name = f"fastlenet-{method}-" + _tokenize(x.name, shared.token, method, threads, isa)
    drop = list(range(1, x.ndim))
    if not tail:  # predict: (N,) int64
        return x.map_blocks(_array_block, key, method, threads, isa, dtype=np.int64,
                            drop_axis=drop, meta=np.empty((0,), np.int64), name=name)
    return x.map_blocks(_array_block, key, method, threads, isa, dtype=np.float32,
                        drop_axis=drop[1:], chunks=(x.chunks[0], tail),
                        meta=np.empty((0,) + tail, np.float32), name=name)


def _check_isa(isa) -> None:
    # Every level name is valid here: the workers' CPUs, not the client's, decide what runs.
    if isa is not None and isa not in _engine.ISA_NAMES:
        raise ValueError(f"isa: expected one of {', '.join(_engine.ISA_NAMES)} or None; got "
                         f"{isa!r}")


def _tokenize(*parts) -> str:
    from dask.base import tokenize

    return tokenize(*parts)


# ---- files ----------------------------------------------------------------------------------
def partition_sources(sources, files_per_partition: int = FILES_PER_PARTITION) -> List[List[str]]:
    """The concrete files that ``sources`` names (fastlenet.io.sources.expand, in the order
    predict_files reads them), cut into partitions: up to ``files_per_partition`` image files
    each, while a file that holds many images (a .tar/.zip shard, an IDX or .npy file) gets a
    partition of its own. Runs on the client: listing folders is cheap next to reading them."""
    if (isinstance(files_per_partition, bool) or not isinstance(files_per_partition, int)
            or files_per_partition < 1):
        raise ValueError(f"files_per_partition: expected a positive integer; got "
                         f"{files_per_partition!r}")
    parts, current = [], []
    for path in expand(sources):
        path = os.fspath(path)
        if is_container(path):  # tens of thousands of rows: a partition of its own
            if current:
                parts.append(current)
                current = []
            parts.append([path])
            continue
        current.append(path)
        if len(current) == files_per_partition:
            parts.append(current)
            current = []
    if current:
        parts.append(current)
    return parts


def _columns(top_k: int) -> List[str]:
    cols = ["source", "member", "index", "label", "confidence", "error"]
    for j in range(2, top_k + 1):
        cols += [f"label_{j}", f"confidence_{j}"]
    return cols


def _frame(rows, top_k: int):
    """Prediction-shaped tuples -> the partition's pandas DataFrame (fixed dtypes, so every
    partition matches the meta whatever it holds)."""
    import pandas as pd

    text = pd.StringDtype("pyarrow")
    cols = {
        "source": pd.array([_utf8(r[0]) for r in rows], dtype=text),
        "member": pd.array([_utf8(r[1]) for r in rows], dtype=text),
        "index": pd.array([r[2] for r in rows], dtype="Int64"),
        "label": np.array([r[3] for r in rows], dtype=np.int64),
        "confidence": np.array([r[4] for r in rows], dtype=np.float64),
        "error": pd.array([_utf8(r[6]) for r in rows], dtype=text),
    }
    for j in range(2, top_k + 1):
        pairs = [r[5][j - 1] if len(r[5]) >= j else (-1, float("nan")) for r in rows]
        cols[f"label_{j}"] = np.array([p[0] for p in pairs], dtype=np.int64)
        cols[f"confidence_{j}"] = np.array([p[1] for p in pairs], dtype=np.float64)
    return pd.DataFrame(cols, columns=_columns(top_k))


def _utf8(name):
    """Text fit for Arrow/Parquet: file names that are not UTF-8 as the CLI prints them
    (fastlenet.names.safe_name), instead of failing the task."""
    return None if name is None else safe_name(name)


def _files_partition(files, shared, options, threads, isa):
    """One task: predict_files over this partition's files, in the worker, as a DataFrame."""
    from fastlenet.pipeline.run import predict_files as run

    top_k = options.get("top_k", 1)
    rows = _run_partition(run, files, shared, options, threads, isa,
                          lambda f, msg: (f, None, None, -1, float("nan"), (), msg))
    return _frame(rows, top_k)


def _run_partition(run, files, shared, options, threads, isa, error_row):
    """rows of `run` (predict_files or read_fields) over a partition, in the worker."""
    net = _worker_net(shared, threads, isa)
    opts = dict(options)
    # Decoding threads follow the thread policy too: with one engine thread, the Dask thread
    # decodes itself (workers=0, no pool); Dask's threads and processes are the parallelism.
    n = engine_threads(threads)
    opts.setdefault("workers", 0 if n == 1 else n)
    try:
        rows = list(run(files, net, **opts))
    except Exception:
        # the pipeline reports unreadable inputs as rows; anything it raises is unexpected.
        # Redo the partition file by file, so that one such file costs one error row and the
        # rest of the partition (and the job) still stands.
        rows = []
        for f in files:
            try:
                rows.extend(run([f], net, **opts))
            except Exception as e:
                rows.append(error_row(f, f"{type(e).__name__}: {e}".splitlines()[0]))
    _count(len(rows))
    return rows


def _check_options(run, options: dict) -> None:
    """Keywords for `run` (the in-process pipeline function) that it does not take, or a
    max_pixels that is not a positive integer: a TypeError/ValueError here, on the client."""
    import inspect

    unknown = set(options) - set(inspect.signature(run).parameters)
    if unknown:
        raise TypeError(f"{run.__name__}: unexpected keyword(s) {', '.join(sorted(unknown))}")
    mp = options.get("max_pixels")
    if mp is not None and (isinstance(mp, bool) or not isinstance(mp, (int, np.integer))
                           or mp < 1):
        raise ValueError(f"max_pixels: expected a positive integer or None; got {mp!r}")


FIELD_COLUMNS = ["source", "member", "index", "text", "confidence", "digits", "error"]


def _field_frame(rows):
    """Fields -> the partition's pandas DataFrame; `digits` as JSON text (label, confidence,
    box and alternatives per digit), so that Parquet and CSV hold it alike."""
    import json

    import pandas as pd

    text = pd.StringDtype("pyarrow")
    cols = {
        "source": pd.array([_utf8(r.source) for r in rows], dtype=text),
        "member": pd.array([_utf8(r.member) for r in rows], dtype=text),
        "index": pd.array([r.index for r in rows], dtype="Int64"),
        "text": pd.array([r.text for r in rows], dtype=text),
        "confidence": np.array([r.confidence for r in rows], dtype=np.float64),
        "digits": pd.array([json.dumps([[d.label, round(d.confidence, 6), list(d.box),
                                         [[c, round(p, 6)] for c, p in d.alternatives]]
                                        for d in r.digits])
                            for r in rows], dtype=text),
        "error": pd.array([_utf8(r.error) for r in rows], dtype=text),
    }
    return pd.DataFrame(cols, columns=FIELD_COLUMNS)


def _fields_partition(files, shared, options, threads, isa):
    """One task: read_fields over this partition's files, in the worker, as a DataFrame."""
    from fastlenet.fields import Field
    from fastlenet.pipeline.fields import read_fields as run

    rows = _run_partition(run, files, shared, options, threads, isa,
                          lambda f, msg: Field(f, None, None, "", float("nan"), (), msg))
    return _field_frame(rows)


def read_fields(sources, net=None, *, files_per_partition: int = FILES_PER_PARTITION,
                length=None, invert: str = "auto", threads: Optional[int] = None,
                isa: Optional[str] = None, workers: Optional[int] = None, **options):
    """fastlenet.read_fields on a Dask cluster: a lazy dask DataFrame, one row per field.

    sources, partitions, the Net's travel and the thread policy: as predict_files here.
    Columns: source, member, index, text, confidence, digits (JSON: [label, confidence,
    [x0, y0, x1, y1], [[label, p], ...]] per digit), error; an input that cannot be read is a
    row with its error, never a failed job. length, invert and any other keyword (e.g.
    max_pixels) go to fastlenet.read_fields. net: as there, one Net or several read together;
    the default models travel in fp32 and each worker runs them in int8 where its CPU (at
    `isa`) has int8 kernels, as fastlenet.fields.default_nets does in one process.
    """
    _require_dask()
    import dask
    import dask.dataframe as dd

    from fastlenet.fields import check_net, default_nets, length_range

    from fastlenet.pipeline.fields import read_fields as run
    from fastlenet.pixels import invert_choice

    auto = net is None
    net = default_nets("fp32") if auto else check_net(net)
    # refused here, on the client, rather than as an error row for every input
    length_range(length)
    invert_choice(invert)
    _check_options(run, options)
    if threads is not None:
        engine_threads(threads)
    _check_isa(isa)
    parts = partition_sources(sources, files_per_partition)
    _, shared, key = _net_key(net, many=True, auto=auto)
    options = dict(options, length=length, invert=invert)
    if workers is not None:
        options["workers"] = workers
    meta = _field_frame([])
    if not parts:
        return dd.from_pandas(meta, npartitions=1)
    task = dask.delayed(_fields_partition, pure=True)
    base = _tokenize(shared.token, repr(options), threads, isa)
    delayed = [task(files, key, options, threads, isa,
                    dask_key_name=f"fastlenet-fields-{base}-{i}")
               for i, files in enumerate(parts)]
    return dd.from_delayed(delayed, meta=meta, verify_meta=False)


def predict_files(sources, net=None, *, files_per_partition: int = FILES_PER_PARTITION,
                  top_k: int = 1, batch_size: Optional[int] = None, invert: str = "auto",
                  preprocess: str = "auto", threads: Optional[int] = None,
                  isa: Optional[str] = None, workers: Optional[int] = None, **options):
    """fastlenet.predict_files on a Dask cluster: a lazy dask DataFrame, one row per input.

    sources: what fastlenet.predict_files takes (paths, folders, globs, .tar/.zip shards, IDX,
    .npy). The file list is built here on the client (fastlenet.io.sources.expand) and cut into
    partitions of ``files_per_partition`` files (a shard or an IDX/.npy file: one partition of
    its own); each partition is one task running fastlenet.predict_files in a worker, so the
    workers must see the same paths (a shared file system, or object storage mounted alike).
    Columns: source, member, index, label, confidence, error (then label_j, confidence_j for
    j = 2..top_k), in input order; an input that cannot be read is a row with its error,
    label -1 and confidence NaN, never a failed job. top_k, batch_size, invert, preprocess
    and any other keyword (e.g. max_pixels) go to fastlenet.predict_files; threads (the
    engine's) defaults to engine_threads() per task, and workers (predict_files' decoding
    pool) to none when that is 1, else as many.
    """
    _require_dask()
    import dask
    import dask.dataframe as dd

    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k: expected a positive integer; got {top_k!r}")
    if threads is not None:
        engine_threads(threads)
    _check_isa(isa)
    parts = partition_sources(sources, files_per_partition)
    _, shared, key = _net_key(net)
    options = dict(options, top_k=top_k, invert=invert, preprocess=preprocess)
    if batch_size is not None:
        options["batch_size"] = batch_size
    if workers is not None:
        options["workers"] = workers
    meta = _frame([], top_k)
    if not parts:
        return dd.from_pandas(meta, npartitions=1)
    task = dask.delayed(_files_partition, pure=True)
    base = _tokenize(shared.token, options, threads, isa)
    delayed = [task(files, key, options, threads, isa,
                    dask_key_name=f"fastlenet-files-{base}-{i}") for i, files in enumerate(parts)]
    return dd.from_delayed(delayed, meta=meta, verify_meta=False)
