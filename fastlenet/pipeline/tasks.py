"""Work units: sources cut into tasks in input order, and what one task does in a worker (read,
decode, preprocess, and in a worker process classify)."""
from __future__ import annotations

import numpy as np

from fastlenet import fields, prepare
from fastlenet.io import containers, decode, kinds, sources
from fastlenet.pipeline.rows import error_text

PREPROCESS_CHOICES = ("auto", "mnist", "none")
DEFAULT_BATCH = 1024
# Image files per worker task: large enough that the task's overhead (pickling names and the
# result array, a queue round trip: ~0.1 ms) is small beside ~100 us per file, small enough to
# keep both workers and the engine fed.
TASK_FILES = 128
# A field costs ~10x a digit (its segmentation, ~40 candidates preprocessed and classified).
TASK_FIELDS = 32
# The engine of a worker process (_worker_init): a one-thread copy of the caller's Net (a tuple
# of them for fields).
_WORKER_NET = None


def _worker_init(net, isas) -> None:
    """Runs once in each decode worker process; isas: the caller's ISA level of each of
    fields.members(net)."""
    global _WORKER_NET
    decode.quiet_pillow()
    if net is not None:
        # an unpickled Net (forkserver, spawn) takes the best ISA: keep the caller's
        for n, level in zip(fields.members(net), isas):
            n.isa = level
            n.num_threads = 1
        _WORKER_NET = net


def _decode_task(kind: str, items: list, cfg: prepare.Settings):
    """Runs in a worker: read (kind "files": paths) or take (kind "blobs": (bytes, error)
    pairs) each item, decode the lot with Pillow and preprocess it in one C call; in a worker
    process with an engine (_worker_init), classify it there too.
    -> (out, [error or None per item], scored): out holds the k good items' float32 (k, size,
    size) model inputs or, when scored, their (k, classes) probabilities. For fields
    (cfg.fields): the k decoded images, or when scored their k fastlenet.fields.Field."""
    blobs, errors = [], []
    for it in items:
        try:
            if kind == "files":
                data = decode.read_file_bytes(it, cfg.max_bytes)
                if not data:
                    raise ValueError("empty file")
            else:
                data, err = it
                if err is not None:
                    raise ValueError(err)
            blobs.append(data)
            errors.append(None)
        except Exception as e:
            errors.append(error_text(e))
    if cfg.channels == 3:
        decoded = []
        for data in blobs:
            try:
                decoded.append(decode.to_rgb_input(data, cfg.size, cfg.max_pixels))
            except Exception as e:
                decoded.append(e)
    else:
        decoded = decode.decode_many(blobs, cfg.max_pixels)
    arrays, j = [], 0
    for k, err in enumerate(errors):
        if err is not None:
            continue
        a = decoded[j]
        j += 1
        if not isinstance(a, Exception) and cfg.fields is None and cfg.mode == "none" and \
                cfg.channels == 1 and \
                (a.shape[0] != a.shape[1] or a.shape[0] not in (28, 32)):
            a = ValueError(f"preprocess='none' (--raw) takes 28x28 or 32x32 images; found "
                           f"{a.shape[0]}x{a.shape[1]}")
        if isinstance(a, Exception):
            errors[k] = error_text(a)
        else:
            arrays.append(a)
    if cfg.fields is not None:
        if _WORKER_NET is not None:
            return read_fields_of(arrays, _WORKER_NET, cfg), errors, True
        return arrays, errors, False
    x = prepare.prepare_list(arrays, cfg)
    if _WORKER_NET is not None:
        # probabilities (40 bytes an image) travel back instead of pixels (3 KB), and the
        # engine's work is spread over the workers rather than queued in the main process
        return _WORKER_NET.predict_proba(x), errors, True
    return x, errors, False


def read_fields_of(images, net, cfg: prepare.Settings) -> list:
    """Decoded images (or a chunk of an IDX/.npy file) read as fields, as cfg says."""
    lo, hi = cfg.fields
    return fields.read_arrays(images, net, length=range(lo, hi + 1), invert=cfg.invert,
                              threads=cfg.threads)


def _prepared(x, cfg: prepare.Settings):
    """A chunk of pixels from an IDX/.npy file as its units carry it: model inputs, or the
    pixels themselves for fields (read where the engine is)."""
    return x if cfg.fields is not None else prepare.prepare_arrays(x, cfg, False)


class _Done:
    """A unit computed in the main thread, queued beside the pool's futures."""
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


def _units(srcs, cfg: prepare.Settings, task_files: int, chunk: int):
    """Work units in input order: ("task", kind, names, items) for a worker, or ("done",
    names, x, errors) computed here. names are (source, member, index) triples."""
    files: list = []
    for path, err, k in sources.walk(srcs):
        if err is None and k == "unknown":
            k, err = _sniff(path)
        if err is not None:
            yield from _pending_files(files)
            files = []
            yield _error_unit(path, err)
            continue
        if k == "image":
            files.append(path)
            if len(files) >= task_files:
                yield from _pending_files(files)
                files = []
            continue
        yield from _pending_files(files)
        files = []
        if k == "idx":
            yield from _idx_units(path, cfg, chunk)
        elif k == "npy":
            yield from _npy_units(path, cfg, chunk)
        else:
            yield from _shard_units(path, cfg, task_files)
    yield from _pending_files(files)


def _sniff(path: str):
    """A path walk() could not name by its suffix -> (kind, None), or (None, error) when it
    cannot be read: the error becomes that path's row rather than ending the run."""
    try:
        return kinds.sniff(path), None
    except OSError as e:
        return None, e.strerror or str(e)


def _pending_files(files: list):
    """The image files collected so far as one worker task (if any): emitted before any unit
    that comes after them in input order, so rows keep the order of the inputs."""
    if files:
        yield ("task", "files", [(p, None, None) for p in files], list(files))


def _error_unit(source, msg, member=None, index=None):
    """A source that yields no image (unreadable, damaged) still gets one row, its error."""
    return ("done", [(source, member, index)], None, [msg])


def _idx_units(path: str, cfg: prepare.Settings, chunk: int):
    """An IDX file is already pixels: prepared here chunk by chunk, no decode worker needed;
    a chunk that fails preprocessing fails its rows only."""
    try:
        for start, x in containers.iter_idx(path, chunk):
            names = [(path, None, start + i) for i in range(len(x))]
            try:
                yield ("done", names, _prepared(x, cfg), [None] * len(x))
            except ValueError as e:
                yield ("done", names, None, [str(e)] * len(x))
    except OSError as e:
        yield _error_unit(path, e.strerror or str(e))
    except ValueError as e:
        yield _error_unit(path, str(e))


def _npy_units(path: str, cfg: prepare.Settings, chunk: int):
    """A .npy file is already pixels (memory-mapped): prepared here chunk by chunk; a single
    image (2-D array) has no row index."""
    try:
        a, single = containers.open_npy(path)
    except OSError as e:
        yield _error_unit(path, e.strerror or str(e))
        return
    except ValueError as e:
        yield _error_unit(path, str(e))
        return
    for start in range(0, len(a), chunk):
        part = np.asarray(a[start:start + chunk])
        names = [(path, None, None if single else start + i) for i in range(len(part))]
        try:
            yield ("done", names, _prepared(part, cfg), [None] * len(part))
        except (ValueError, TypeError) as e:
            yield ("done", names, None, [str(e)] * len(part))


def _shard_units(path: str, cfg: prepare.Settings, task_files: int):
    """A shard's members are read here (one forward stream) and decoded by workers; a damaged
    archive keeps the members read before the damage, then adds one error row."""
    blobs, names = [], []
    try:
        for member, data, merr in containers.iter_shard(path, cfg.max_bytes):
            blobs.append((data, merr))
            names.append((path, member, None))
            if len(blobs) >= task_files:
                yield ("task", "blobs", names, blobs)
                blobs, names = [], []
    except OSError as e:
        msg = e.strerror or str(e)
    except ValueError as e:
        msg = str(e)
    except Exception as e:  # anything else a damaged archive raises: one row
        msg = f"corrupt archive ({type(e).__name__}: {e})"
    else:
        msg = None
    if blobs:
        yield ("task", "blobs", names, blobs)
    if msg is not None:
        yield _error_unit(path, msg)
