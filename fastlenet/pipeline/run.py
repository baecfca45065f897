"""predict_files and predict_batches: sources -> tasks -> the pool -> the engine -> rows."""
from __future__ import annotations

from typing import Iterator, Optional

import numpy as np

from fastlenet import _engine, models, prepare
from fastlenet.io.decode import MAX_PIXELS
from fastlenet.io.kinds import MAX_FILE_BYTES
from fastlenet.pixels import invert_choice
from fastlenet.pipeline.pool import _ordered, worker_copy, workers_and_pool
from fastlenet.pipeline.rows import Prediction, make_rows
from fastlenet.pipeline.tasks import DEFAULT_BATCH, PREPROCESS_CHOICES, TASK_FILES, _units

def predict_batches(sources, net=None, *, batch_size: int = DEFAULT_BATCH,
                    workers: Optional[int] = None, top_k: int = 1, invert: str = "auto",
                    preprocess: str = "auto", max_pixels: Optional[int] = None,
                    pool: Optional[str] = None, inputs: bool = False):
    """predict_files in lists (one per engine call, in input order): what the CLI writes in
    bulk. Same arguments as predict_files; with inputs=True, yields (predictions, x) where x
    holds the model inputs of the predictions without an error, in order."""
    if net is None:
        net = models.pretrained()
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer; got {batch_size!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k: expected a positive integer; got {top_k!r}")
    invert = invert_choice(invert)
    if preprocess not in PREPROCESS_CHOICES:
        raise ValueError(f"preprocess: expected one of {', '.join(PREPROCESS_CHOICES)}; got "
                         f"{preprocess!r}")
    workers, pool = workers_and_pool(workers, pool)
    if max_pixels is None:
        max_pixels = MAX_PIXELS
    size, light = prepare.model_geometry(net)
    cfg = prepare.Settings(size, invert, light, preprocess, max_pixels, MAX_FILE_BYTES,
               1 if workers > 0 else _engine.DEFAULT_THREADS, net.in_channels)
    task_files = max(8, min(TASK_FILES, batch_size))
    state = {"pool": False}
    solo = _single_threaded(net) if workers > 0 and net.num_threads > 1 else net
    # Process workers classify with a copy of the Net, unless the caller wants the model inputs
    copied = worker_copy(net) if pool == "process" and not inputs else None
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
    rows = make_rows(slots, proba, top_k)
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
    net: a fastlenet.Net (default models.pretrained()); its metadata gives the input size
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
    fastlenet.MAX_PIXELS, 40 million).

    Yields one Prediction per input image; an input that cannot be read yields one with
    `error` set, and the rest goes on. Memory stays bounded by a few batches in flight.
    """
    for rows in predict_batches(sources, net, batch_size=batch_size, workers=workers,
                                top_k=top_k, invert=invert, preprocess=preprocess,
                                max_pixels=max_pixels, pool=pool):
        yield from rows
