"""read_fields: sources -> tasks -> the pool -> fields read -> Field rows, in input order.

The same sources, workers, ordering, error rows and bounded memory as predict_files (one
owner: the units of pipeline.tasks and the pool of pipeline.pool); only the work on each
decoded image differs (fastlenet.fields.read_arrays instead of preprocess + classify).
"""
from __future__ import annotations

import math
from typing import Iterator, Optional

from fastlenet import fields, prepare
from fastlenet.io.decode import MAX_PIXELS
from fastlenet.io.kinds import MAX_FILE_BYTES
from fastlenet.pipeline.pool import _ordered, worker_copy, workers_and_pool
from fastlenet.pipeline.tasks import TASK_FIELDS, _units, read_fields_of
from fastlenet.pixels import invert_choice

# Images of an IDX/.npy file per unit (read in this process).
FIELD_CHUNK = 256


def read_field_batches(sources, net=None, *, workers: Optional[int] = None, length=None,
                       invert: str = "auto", max_pixels: Optional[int] = None,
                       pool: Optional[str] = None):
    """read_fields in lists of Fields, one per unit of work, in input order: what the CLI
    writes in bulk. Arguments as read_fields."""
    nets = fields.check_net(net)
    lo, hi = fields.length_range(length)
    invert = invert_choice(invert)
    workers, pool = workers_and_pool(workers, pool)
    size, light = prepare.model_geometry(nets[0])
    threads = 1 if workers > 0 else nets[0].num_threads
    cfg = prepare.Settings(size, invert, light, "mnist",
                           MAX_PIXELS if max_pixels is None else max_pixels, MAX_FILE_BYTES,
                           threads, 1, (lo, hi))
    # Worker processes read with one-thread copies of the Nets; in this process, the caller's.
    copied = worker_copy(nets) if pool == "process" and workers > 0 else None
    state = {"pool": False}
    nan = math.nan
    for names, x, errors, scored in _ordered(_units(sources, cfg, TASK_FIELDS, FIELD_CHUNK),
                                             cfg, int(workers), pool, state, copied):
        if scored:
            done = x
        elif x is not None and len(x):
            done = read_fields_of(x, nets, cfg._replace(threads=1 if state["pool"] else
                                                        nets[0].num_threads))
        else:
            done = []
        rows, j = [], 0
        for (source, member, index), err in zip(names, errors):
            if err is None:
                rows.append(done[j]._replace(source=source, member=member, index=index))
                j += 1
            else:
                rows.append(fields.Field(source, member, index, "", nan, (), err))
        yield rows


def read_fields(sources, net=None, *, workers: Optional[int] = None, length=None,
                invert: str = "auto", max_pixels: Optional[int] = None,
                pool: Optional[str] = None) -> Iterator[fields.Field]:
    """Read the fields that `sources` names (each image one field), lazily, in input order.

    sources: what predict_files takes: image files, folders (recursive, natural order), glob
    patterns, .tar/.tar.gz/.zip shards, IDX files and .npy arrays (each image a field).
    net: a fastlenet.Net whose classes 0-9 are the digits, or a sequence of them whose
    probabilities are averaged, pair readers among them (default: the bundled models; see
    fastlenet.fields.check_net).
    workers: processes (or threads, pool="thread") that read, decode and read fields; 0 does
    it all in the calling thread; default: the CPUs this process may use.
    length: the number of digits each field has (an int or a range), or None.
    invert: "auto" (ink is the minority class), "yes" (light ink), "no" (dark ink).
    max_pixels: images with more pixels are refused from their header (an error row).

    Yields one fastlenet.Field per input image; an input that cannot be read yields one with
    `error` set (text ""), and the rest goes on. Memory stays bounded by a few tasks in flight.
    """
    for rows in read_field_batches(sources, net, workers=workers, length=length,
                                   invert=invert, max_pixels=max_pixels, pool=pool):
        yield from rows
