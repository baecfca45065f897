"""The file pipeline: sources -> decoded pixels -> preprocessing in C -> the engine -> results.

    for p in fastlenet.predict_files(["scans/", "shard-0001.tar"], net=net):
        print(p.source, p.member, p.index, p.label, p.confidence, p.error)

    x = fastlenet.preprocess(list_of_2d_arrays)      # the same preprocessing for your own decoder

See README.md ("Files") for what can be read. Work is cut into chunks of inputs; a pool of
worker processes (or threads) reads, decodes and preprocesses whole chunks, with a bounded window
of chunks in flight; worker processes also run a one-thread copy of the engine on their chunk
and send back probabilities, not pixels. Results are put in input order in the main thread, which
runs the engine itself on what it read (IDX, .npy) or when the caller asks for the model inputs.
A bad input becomes a Prediction with `error` set and never stops the stream.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Optional

import numpy as np

INVERT_CHOICES = ("auto", "yes", "no")
FOREGROUNDS = ("light-on-dark", "dark-on-light")


class Prediction(NamedTuple):
    """One input's result. `source` is the file path given or found; `member` the name inside a
    .tar/.tar.gz/.zip shard (else None); `index` the image's position inside an IDX or .npy file
    (else None). On error, `label` is -1, `confidence` nan, `top_k` empty and `error` a one-line
    message."""
    source: str
    member: Optional[str]
    index: Optional[int]
    label: int
    confidence: float
    top_k: tuple
    error: Optional[str]

    @property
    def name(self) -> str:
        """source, source:member or source[index]: how the CLI names an input."""
        if self.member is not None:
            return f"{self.source}:{self.member}"
        if self.index is not None:
            return f"{self.source}[{self.index}]"
        return self.source


# ---- preprocessing --------------------------------------------------------------------------
def _unit_scale(a: np.ndarray) -> float:
    """The factor that maps an array's values to [0, 1]: by dtype for integers; floats as they
    are when they fit [0, 1], else /255 (or /65535 above 255)."""
    if a.dtype == np.uint8:
        return 1 / 255
    if a.dtype == np.uint16:
        return 1 / 65535
    if a.size == 0:
        return 1.0
    top = float(a.max())
    return 1.0 if top <= 1 else 1 / 255 if top <= 255 else 1 / 65535


def _as_gray(img, where: str) -> np.ndarray:
    """A 2-D array the C code reads: uint8, uint16, float32 or float64, native byte order.
    Colour (HxWx3/4) becomes luma, alpha composited on white paper."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[-1] in (1, 3, 4):
        from fastlenet.images import to_gray

        a = to_gray(a)
    if a.ndim != 2:
        raise ValueError(f"{where}: expected a 2-D image (or HxWx1/3/4); got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{where}: empty image (shape {a.shape})")
    if a.dtype == np.bool_:
        a = a.view(np.uint8) * np.uint8(255)
    elif a.dtype.kind in "iu" and a.dtype not in (np.uint8, np.uint16):
        if a.min() < 0 or a.max() > 65535:
            raise ValueError(f"{where}: integer pixels must be in 0..65535; found "
                             f"{a.min()}..{a.max()}")
        a = a.astype(np.uint16 if a.max() > 255 else np.uint8)
    elif a.dtype.kind == "f" and a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32)
    elif a.dtype.kind not in "uif":
        raise TypeError(f"{where}: expected numeric pixels; got dtype {a.dtype}")
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{where}: image has NaN or infinite values")
    return a


def preprocess(images, *, size: int = 28, invert: str = "auto",
               foreground: str = "light-on-dark", num_threads: Optional[int] = None
               ) -> np.ndarray:
    """Pictures of single digits -> float32 (N, size, size) model input in [0, 1], as MNIST
    was made: Otsu threshold, polarity (``invert``: "auto" decides per image from its frame;
    "yes"/"no" invert the values or keep them), the digit's ink without stray specks, strokes
    thickened when thin, its box scaled into 20x20 (aspect kept, anti-aliased) and centred by
    centre of mass; light ink on dark (or ``foreground="dark-on-light"``). The same for every
    image size, 28x28 and 32x32 included. Runs in C (csrc/preprocess.c) with the GIL released,
    on up to ``num_threads`` threads (default: the engine's default).

    images: a list of 2-D arrays of any sizes (uint8, uint16, bool, float in [0, 1] or 0..255;
    HxWx3/4 colour becomes luma), or an array: (N, H, W) is N grayscale images, (N, H, W, C)
    N colour images.
    """
    from fastlenet import _engine

    invert = _invert_choice(invert)
    if foreground not in FOREGROUNDS:
        raise ValueError(f"foreground: expected one of {', '.join(FOREGROUNDS)}; got "
                         f"{foreground!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 20 <= size <= 4096:
        raise ValueError(f"size: expected an integer in 20..4096; got {size!r}")
    threads = _engine.DEFAULT_THREADS if num_threads is None else int(num_threads)
    light = foreground == "light-on-dark"
    if isinstance(images, np.ndarray) and images.ndim == 3:  # (N, H, W): one C call, no copy
        a = images
        if a.shape[1] == 0 or a.shape[2] == 0:
            raise ValueError(f"images: empty images (shape {a.shape})")
        if a.dtype in (np.uint8, np.uint16, np.float32, np.float64) and a.dtype.isnative:
            if a.dtype.kind == "f":
                if not np.isfinite(a).all():
                    raise ValueError("images: NaN or infinite values")
                tops = a.reshape(len(a), -1).max(axis=1) if len(a) else ()
                scales = [1.0 if t <= 1 else 1 / 255 if t <= 255 else 1 / 65535 for t in tops]
            else:
                scales = _unit_scale(a)
            return _engine._preprocess(a, scales, int(size), invert, light, threads)
    if isinstance(images, np.ndarray) and images.ndim == 2:
        raise ValueError("images: expected a list of 2-D images or an (N, H, W) array; got one "
                         "2-D image (wrap it in a list)")
    arrays = [_as_gray(im, f"images[{i}]") for i, im in enumerate(images)]
    scales = [_unit_scale(a) for a in arrays]
    return _engine._preprocess(arrays, scales, int(size), invert, light, threads)


# ---- the pipeline ---------------------------------------------------------------------------
PREPROCESS_CHOICES = ("auto", "mnist", "none")
POOLS = ("process", "thread")
DEFAULT_BATCH = 1024
# Image files per worker task: large enough that the task's overhead (pickling names and the
# result array, a queue round trip: ~0.1 ms) is small beside ~100 us per file, small enough to
# keep both workers and the engine fed.
TASK_FILES = 128


def _invert_choice(invert) -> str:
    """invert= as one of INVERT_CHOICES (True/False mean "yes"/"no")."""
    invert = {True: "yes", False: "no"}.get(invert, invert)
    if invert not in INVERT_CHOICES:
        raise ValueError(f"invert: expected one of {', '.join(INVERT_CHOICES)}; got {invert!r}")
    return invert


class _Cfg(NamedTuple):
    size: int
    invert: str
    light: bool
    mode: str            # auto | mnist | none
    max_pixels: Optional[int]
    max_bytes: int
    threads: int         # threads of the C preprocessing inside one task
    channels: int = 1    # 3: a colour model (whole pictures resized, no digit preprocessing)


def _geometry(net):
    """(input size, light-on-dark?) from the model's metadata."""
    meta = net.meta
    size = meta.get("input_size") or 32
    fg = meta.get("foreground") or "light-on-dark"
    if size not in (28, 32) or fg not in FOREGROUNDS:
        raise ValueError(f"the model's metadata has input_size={size!r}, foreground={fg!r}; "
                         f"expected 28 or 32 and one of {', '.join(FOREGROUNDS)}")
    return int(size), fg == "light-on-dark"


def _passthrough(x: np.ndarray, cfg: _Cfg) -> np.ndarray:
    """(m, H, W) images already prepared as model inputs (28 or 32 square) -> float32 (m, size,
    size) in [0, 1]: scaled by dtype, polarity from the frame when invert="auto" (a light
    frame means dark ink on light paper), padded or cropped to the model's size."""
    m, h, w = x.shape
    if h != w or h not in (28, 32):
        raise ValueError(f"preprocess='none' takes 28x28 or 32x32 images (model inputs); found "
                         f"{h}x{w}: use preprocess='auto'")
    if x.dtype == np.uint8:  # kept as uint8: the engine then sees exactly what net.predict would
        g = np.array(x)
        if cfg.invert == "auto":
            t = max(1, h // 20)
            frame = np.concatenate([g[:, :t].reshape(m, -1), g[:, -t:].reshape(m, -1),
                                    g[:, t:-t, :t].reshape(m, -1),
                                    g[:, t:-t, -t:].reshape(m, -1)], axis=1)
            k = frame.shape[1] // 2
            flip = (np.partition(frame, k, axis=1)[:, k] > 127) == cfg.light
        else:
            flip = np.full(m, cfg.invert == "yes")
        if flip.any():
            g[flip] = 255 - g[flip]
        return _fit(g, cfg, 0 if cfg.light else 255)
    if x.dtype.kind == "f":
        if not np.isfinite(x).all():
            raise ValueError("image has NaN or infinite values")
        tops = x.reshape(m, -1).max(axis=1)
        scale = np.where(tops <= 1, 1.0, np.where(tops <= 255, 1 / 255, 1 / 65535))
        g = np.clip(x * scale[:, None, None].astype(np.float32), 0, 1).astype(np.float32)
    else:
        g = x.astype(np.float32)
        g *= np.float32(1 / 65535 if x.dtype == np.uint16 else 1 / 255)
        if x.dtype.kind == "b":
            g = x.astype(np.float32)
    if cfg.invert == "auto":
        t = max(1, h // 20)
        frame = np.concatenate([g[:, :t].reshape(m, -1), g[:, -t:].reshape(m, -1),
                                g[:, t:-t, :t].reshape(m, -1), g[:, t:-t, -t:].reshape(m, -1)],
                               axis=1)
        k = frame.shape[1] // 2
        light_paper = np.partition(frame, k, axis=1)[:, k] > 0.5
        flip = light_paper == cfg.light
    else:
        flip = np.full(m, cfg.invert == "yes")
    if flip.any():
        g[flip] = 1 - g[flip]
    return _fit(g, cfg, 0.0 if cfg.light else 1.0)


def _fit(g: np.ndarray, cfg: _Cfg, paper) -> np.ndarray:
    """(m, n, n) with n 28 or 32 -> (m, size, size): pad with paper, or crop, equally."""
    h = g.shape[1]
    if h == cfg.size:
        return g
    if h < cfg.size:
        lo = (cfg.size - h) // 2
        return np.pad(g, ((0, 0), (lo, cfg.size - h - lo), (lo, cfg.size - h - lo)),
                      constant_values=paper)
    lo = (h - cfg.size) // 2
    return np.ascontiguousarray(g[:, lo:lo + cfg.size, lo:lo + cfg.size])


def _prepare_arrays(x: np.ndarray, cfg: _Cfg, decoded: bool) -> np.ndarray:
    """A chunk (m, H, W) -> model input. Image files (decoded=True) are always preprocessed
    (unless preprocess="none"); IDX/.npy arrays of the model's input size pass through under
    "auto" (they are datasets in model format already)."""
    if cfg.channels == 3:  # colour models: each picture resized whole, gray ones replicated
        from fastlenet.images import to_rgb_input

        x = x[..., 0] if x.ndim == 4 and x.shape[-1] == 1 else x
        return _prepare_list([to_rgb_input(im, cfg.size) for im in x], cfg)
    if x.ndim == 4:  # colour (N, H, W, C) arrays: luma, alpha on white paper
        from fastlenet.images import to_gray

        x = np.stack([to_gray(im) for im in x]) if len(x) else x[..., 0].astype(np.float32)
    if cfg.mode == "none" or (cfg.mode == "auto" and not decoded and x.shape[1] == x.shape[2]
                              and x.shape[1] in (28, 32)):
        return _passthrough(x, cfg)
    fg = "light-on-dark" if cfg.light else "dark-on-light"
    return preprocess(x, size=cfg.size, invert=cfg.invert, foreground=fg,
                      num_threads=cfg.threads)


# The engine of a worker process (_worker_init): a one-thread copy of the caller's Net.
_WORKER_NET = None


def _worker_init(net, isa) -> None:
    """Runs once in each decode worker process."""
    global _WORKER_NET
    quiet_pillow()
    if net is not None:
        net.isa = isa  # an unpickled Net (forkserver, spawn) takes the best ISA: keep the caller's
        net.num_threads = 1
        _WORKER_NET = net


def _decode_task(kind: str, items: list, cfg: _Cfg):
    """Runs in a worker: read (kind "files": paths) or take (kind "blobs": (bytes, error)
    pairs) each item, decode the lot with Pillow and preprocess it in one C call; in a worker
    process with an engine (_worker_init), classify it there too.
    -> (out, [error or None per item], scored): out holds the k good items' float32 (k, size,
    size) model inputs or, when scored, their (k, classes) probabilities."""
    from fastlenet import images

    blobs, errors = [], []
    for it in items:
        try:
            if kind == "files":
                data = images.read_file_bytes(it, cfg.max_bytes)
                if not data:
                    raise ValueError("empty file")
            else:
                data, err = it
                if err is not None:
                    raise ValueError(err)
            blobs.append(data)
            errors.append(None)
        except Exception as e:
            errors.append(_error_text(e))
    if cfg.channels == 3:
        decoded = []
        for data in blobs:
            try:
                decoded.append(images.to_rgb_input(data, cfg.size, cfg.max_pixels))
            except Exception as e:
                decoded.append(e)
    else:
        decoded = images.decode_many(blobs, cfg.max_pixels)
    arrays, j = [], 0
    for k, err in enumerate(errors):
        if err is not None:
            continue
        a = decoded[j]
        j += 1
        if not isinstance(a, Exception) and cfg.mode == "none" and cfg.channels == 1 and \
                (a.shape[0] != a.shape[1] or a.shape[0] not in (28, 32)):
            a = ValueError(f"preprocess='none' (--raw) takes 28x28 or 32x32 images; found "
                           f"{a.shape[0]}x{a.shape[1]}")
        if isinstance(a, Exception):
            errors[k] = _error_text(a)
        else:
            arrays.append(a)
    x = _prepare_list(arrays, cfg)
    if _WORKER_NET is not None:
        # probabilities (40 bytes an image) travel back instead of pixels (3 KB), and the
        # engine's work is spread over the workers rather than queued in the main process
        return _WORKER_NET.predict_proba(x), errors, True
    return x, errors, False


def _error_text(e: Exception) -> str:
    """One input's error as its row's message."""
    if isinstance(e, OSError):
        return e.strerror or str(e)
    if isinstance(e, (ValueError, ImportError)):
        return str(e)
    # whatever else a hostile file makes a decoder raise: one row
    return f"cannot decode the image ({type(e).__name__}: {e})"


def _prepare_list(arrays: list, cfg: _Cfg) -> np.ndarray:
    if cfg.channels == 3:  # (size, size, 3) uint8 pictures from to_rgb_input
        return np.stack(arrays) if arrays else np.zeros((0, cfg.size, cfg.size, 3), np.uint8)
    if not arrays:
        return np.zeros((0, cfg.size, cfg.size), np.float32)
    if cfg.mode == "none":
        parts = [_passthrough(a[None], cfg) for a in arrays]
        if len({p.dtype for p in parts}) > 1:
            parts = [p.astype(np.float32) / 255 if p.dtype == np.uint8 else p for p in parts]
        return np.concatenate(parts)
    return _preprocess_decoded(arrays, cfg)


def _preprocess_decoded(arrays: list, cfg: _Cfg) -> np.ndarray:
    """preprocess(arrays) for what images.decode returns (2-D native uint8, uint16 or float32
    in [0, 1]), without preprocess()'s per-image checks (~5 us of Python per image in the
    workers); the same C call with the same scales, so the same result bit for bit."""
    from fastlenet import _engine

    if all(a.dtype.char == "B" for a in arrays):
        scales = 1 / 255
    else:
        scales = [_unit_scale(a) for a in arrays]
    return _engine._preprocess(arrays, scales, cfg.size, cfg.invert, cfg.light, cfg.threads)


class _Done:
    """A unit computed in the main thread, queued beside the pool's futures."""
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


def _units(srcs, cfg: _Cfg, task_files: int, chunk: int):
    """Work units in input order: ("task", kind, names, items) for a worker, or ("done",
    names, x, errors) computed here. names are (source, member, index) triples."""
    from fastlenet import sources as S

    files: list = []

    def flush():
        if files:
            names = [(p, None, None) for p in files]
            unit = ("task", "files", names, list(files))
            files.clear()
            return unit
        return None

    def error(source, msg, member=None, index=None):
        return ("done", [(source, member, index)], None, [msg])

    for path, err, k in S._expand(srcs):
        if err is not None:
            u = flush()
            if u:
                yield u
            yield error(path, err)
            continue
        if k == "unknown":
            try:
                k = S.sniff(path)
            except OSError as e:
                u = flush()
                if u:
                    yield u
                yield error(path, e.strerror or str(e))
                continue
        if k == "image":
            files.append(path)
            if len(files) >= task_files:
                yield flush()
            continue
        u = flush()
        if u:
            yield u
        if k == "idx":
            try:
                for start, x in S.iter_idx(path, chunk):
                    names = [(path, None, start + i) for i in range(len(x))]
                    try:
                        yield ("done", names, _prepare_arrays(x, cfg, False), [None] * len(x))
                    except ValueError as e:
                        yield ("done", names, None, [str(e)] * len(x))
            except OSError as e:
                yield error(path, e.strerror or str(e))
            except ValueError as e:
                yield error(path, str(e))
        elif k == "npy":
            try:
                a, single = S.open_npy(path)
            except OSError as e:
                yield error(path, e.strerror or str(e))
                continue
            except ValueError as e:
                yield error(path, str(e))
                continue
            for start in range(0, len(a), chunk):
                part = np.asarray(a[start:start + chunk])
                names = [(path, None, None if single else start + i) for i in range(len(part))]
                try:
                    x = _prepare_arrays(part, cfg, False)
                    yield ("done", names, x, [None] * len(part))
                except (ValueError, TypeError) as e:
                    yield ("done", names, None, [str(e)] * len(part))
        else:  # a shard: members are read here (one forward stream), decoded by workers
            blobs, names = [], []
            try:
                for member, data, merr in S.iter_shard(path, cfg.max_bytes):
                    blobs.append((data, merr))
                    names.append((path, member, None))
                    if len(blobs) >= task_files:
                        yield ("task", "blobs", names, blobs)
                        blobs, names = [], []
            except OSError as e:
                if blobs:
                    yield ("task", "blobs", names, blobs)
                    blobs, names = [], []
                yield error(path, e.strerror or str(e))
            except ValueError as e:
                if blobs:
                    yield ("task", "blobs", names, blobs)
                    blobs, names = [], []
                yield error(path, str(e))
            except Exception as e:  # anything else a damaged archive raises: one row
                if blobs:
                    yield ("task", "blobs", names, blobs)
                    blobs, names = [], []
                yield error(path, f"corrupt archive ({type(e).__name__}: {e})")
            if blobs:
                yield ("task", "blobs", names, blobs)
    u = flush()
    if u:
        yield u


def _make_pool(kind: str, workers: int, net=None):
    """A process pool (whose workers classify with `net`, a one-thread Net, if given) or a
    thread pool."""
    import concurrent.futures as cf
    import multiprocessing as mp
    import sys

    if kind == "process" and not mp.current_process().daemon:  # daemons (Dask) cannot fork
        method = _start_method()
        ctx = mp.get_context(method)
        # Pillow and its PNG/JPEG plugins imported once, before the workers start, rather than
        # in each worker (measured: 40 ms of CPU per worker, 4 us per image of a 10,000-file run)
        if method == "fork":
            try:
                from fastlenet import images
                images._pillow()
                images._direct_plugins()
            except ImportError:
                pass
        elif method == "forkserver":
            ctx.set_forkserver_preload(["fastlenet.images", "PIL.Image", "PIL.PngImagePlugin",
                                        "PIL.JpegImagePlugin"])
        return cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                      initargs=(net, net.isa if net is not None else None))
    return cf.ThreadPoolExecutor(workers, thread_name_prefix="fastlenet-decode")


def _start_method() -> str:
    """How decode workers start: fork where it is the default and safe (Linux, Python < 3.12:
    no copy of the caller's modules to import or pickle), else forkserver, or spawn on
    Windows."""
    import sys

    if sys.platform.startswith("linux") and sys.version_info < (3, 12):
        return "fork"
    return "forkserver" if sys.platform != "win32" else "spawn"


def quiet_pillow() -> None:
    """Silence Pillow's UserWarnings about damaged files (TIFF tags, EXIF...): each such file
    is already reported once, as an error or not at all. Called in our worker processes and by
    the command line, never on a library user's process."""
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL(\.|$)")


class _Pool:
    """The decode pool, restarted when a worker process dies (a crash in an image library on
    a hostile file): the chunks in flight are redone, the one that was running item by item,
    so that only the item that kills a worker again becomes an error."""

    def __init__(self, kind: str, workers: int, cfg: _Cfg, net=None):
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
            return np.concatenate(parts), errors, scored
        return None, errors, False

    def restart(self):
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.pool = _make_pool(self.kind, self.workers, self.net)

    def shutdown(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


def _ordered(units, cfg: _Cfg, workers: int, pool_kind: str, state: dict, net=None):
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


def _rows(slots, proba: Optional[np.ndarray], top_k: int) -> list:
    """Predictions for slots ((source, member, index), error), images in proba's order."""
    out = []
    if proba is not None and len(proba):
        k = min(top_k, proba.shape[1])
        if k == 1:
            best = proba.argmax(axis=1)
            conf = proba[np.arange(len(proba)), best]
            tops = [((b, c),) for b, c in zip(best.tolist(), conf.tolist())]
        else:
            order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
            confs = np.take_along_axis(proba, order, axis=1)
            tops = [tuple(zip(o, c)) for o, c in zip(order.tolist(), confs.tolist())]
    else:
        tops = []
    j = 0
    nan = float("nan")
    for (source, member, index), err in slots:
        if err is None:
            t = tops[j]
            j += 1
            out.append(Prediction(source, member, index, t[0][0], t[0][1], t, None))
        else:
            out.append(Prediction(source, member, index, -1, nan, (), err))
    return out


def predict_batches(sources, net=None, *, batch_size: int = DEFAULT_BATCH,
                    workers: Optional[int] = None, top_k: int = 1, invert: str = "auto",
                    preprocess: str = "auto", max_pixels: Optional[int] = None,
                    pool: Optional[str] = None, inputs: bool = False):
    """predict_files in lists (one per engine call, in input order): what the CLI writes in
    bulk. Same arguments as predict_files; with inputs=True, yields (predictions, x) where x
    holds the model inputs of the predictions without an error, in order."""
    import fastlenet
    from fastlenet import images, sources as S

    if net is None:
        net = fastlenet.pretrained()
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer; got {batch_size!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k: expected a positive integer; got {top_k!r}")
    invert = _invert_choice(invert)
    if preprocess not in PREPROCESS_CHOICES:
        raise ValueError(f"preprocess: expected one of {', '.join(PREPROCESS_CHOICES)}; got "
                         f"{preprocess!r}")
    if workers is None:
        workers = fastlenet.DEFAULT_THREADS
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ValueError(f"workers: expected a non-negative integer or None; got {workers!r}")
    pool = pool or "process"
    if pool not in POOLS:
        raise ValueError(f"pool: expected one of {', '.join(POOLS)}; got {pool!r}")
    if max_pixels is None:
        max_pixels = images.MAX_PIXELS
    size, light = _geometry(net)
    cfg = _Cfg(size, invert, light, preprocess, max_pixels, S.MAX_FILE_BYTES,
               1 if workers > 0 else fastlenet.DEFAULT_THREADS, net.in_channels)
    task_files = max(8, min(TASK_FILES, batch_size))
    state = {"pool": False}
    solo = _single_threaded(net) if workers > 0 and net.num_threads > 1 else net
    # Process workers classify with a copy of the Net, unless the caller wants the model
    # inputs, or the Net is a subclass: its overrides (methods, state, side effects in this
    # process) would not travel with a copy, so it runs here, as the caller's object.
    copied = solo if pool == "process" and not inputs and type(net) is fastlenet.Net else None
    slots, xs, n = [], [], 0
    for names, x, errors, scored in _ordered(_units(sources, cfg, task_files, batch_size), cfg,
                                             int(workers), pool, state, copied):
        slots.extend(zip(names, errors))
        if x is not None and len(x):
            xs.append((x, scored))
            n += len(x)
        if n >= batch_size or (n == 0 and len(slots) >= batch_size):
            yield _emit(solo if state["pool"] else net, slots, xs, top_k, inputs)
            slots, xs, n = [], [], 0
    if slots:
        yield _emit(solo if state["pool"] else net, slots, xs, top_k, inputs)


def _single_threaded(net):
    """A one-thread copy of net for batches computed while the decode workers hold the cores:
    a second engine thread then mostly waits for a core (measured on a PNG folder, 3
    interleaved runs: the main process's CPU per image 41-52 us with two engine threads,
    34-41 us with one). Results are the same for any thread count."""
    try:
        clone = type(net)(net.weights, net.meta, num_threads=1)
        clone.isa = net.isa
        return clone
    except Exception:  # a Net subclass with other constructor arguments: keep the user's
        return net


def _emit(net, slots, xs, top_k, inputs):
    """xs: (array, scored) parts in input order, probabilities from the workers or model
    inputs. One engine call per run of inputs of one dtype (uint8 model inputs stay uint8, so
    that results equal net.predict on them bit for bit: the engine's result for an image does
    not depend on the batch it is in)."""
    groups, probas = [], []
    for x, scored in xs:
        if groups and not scored and not groups[-1][1] and groups[-1][0][0].dtype == x.dtype:
            groups[-1][0].append(x)
        else:
            groups.append(([x], scored))
    batches = []
    for parts, scored in groups:
        b = parts[0] if len(parts) == 1 else np.concatenate(parts)
        probas.append(b if scored else net.predict_proba(b))
        if not scored:
            batches.append(b)
    proba = probas[0] if len(probas) == 1 else np.concatenate(probas) if probas else None
    rows = _rows(slots, proba, top_k)
    if not inputs:
        return rows
    if len(batches) > 1:
        batches = [b.astype(np.float32) / 255 if b.dtype == np.uint8 else b for b in batches]
    return rows, (np.concatenate(batches) if len(batches) > 1 else batches[0] if batches
                  else None)


def predict_files(sources, net=None, *, batch_size: int = DEFAULT_BATCH,
                  workers: Optional[int] = None, top_k: int = 1, invert: str = "auto",
                  preprocess: str = "auto", max_pixels: Optional[int] = None,
                  pool: Optional[str] = None) -> Iterator[Prediction]:
    """Classify the images that `sources` names, lazily, in input order.

    sources: a path (str or PathLike) or an iterable of them: image files (PNG, JPEG, BMP,
    GIF, TIFF, WebP, PNM; Pillow), folders (recursive, natural order), glob patterns,
    .tar/.tar.gz/.zip shards of image files (read as streams), IDX files (gzipped or not) and
    .npy arrays (one image or a batch).
    net: a fastlenet.Net (default fastlenet.pretrained()); its metadata gives the input size
    and polarity, and its outputs the number of classes.
    batch_size: images per batch of results (and per engine call in this process; worker
    processes classify their chunks of files themselves).
    workers: processes (or threads, pool="thread") that read, decode and preprocess image
    files; 0 does it all in the calling thread; default: the CPUs this process may use.
    top_k: the k most likely classes in each Prediction's top_k.
    invert: "auto" (polarity per image), "yes", "no": see fastlenet.preprocess.
    preprocess: "auto" preprocesses image files (fastlenet.preprocess) and passes IDX/.npy
    images of 28x28 or 32x32 through as model inputs; "mnist" preprocesses everything;
    "none" passes everything through (28x28 or 32x32 only).
    max_pixels: images with more pixels are refused from their header (default
    fastlenet.images.MAX_PIXELS, 40 million).

    Yields one Prediction per input image; an input that cannot be read yields one with
    `error` set, and the rest goes on. Memory stays bounded by a few batches in flight.
    """
    for rows in predict_batches(sources, net, batch_size=batch_size, workers=workers,
                                top_k=top_k, invert=invert, preprocess=preprocess,
                                max_pixels=max_pixels, pool=pool):
        yield from rows
