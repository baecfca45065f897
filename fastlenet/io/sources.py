"""Sources -> the named inputs they hold, lazily and in a stable order.

    expand(sources)     paths, folders (recursive, natural order), globs -> file paths
    walk(sources)       the same as (path, error, kind by name) triples: what the pipeline reads
    count(sources)      how many inputs they hold, when that is cheap to know
"""
from __future__ import annotations

import glob
import os
import re
import zipfile
from typing import Iterator, Optional, Tuple

from fastlenet.io import containers
from fastlenet.io.kinds import _kind_of_name, kind, sniff
from fastlenet.names import natural_key

_GLOB_CHARS = re.compile(r"[*?[]")


def _is_dir(entry) -> bool:
    """DirEntry.is_dir (free from the directory listing, a stat only for symlinks); an entry
    that cannot be examined counts as a file, which then fails to open: one error."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _walk_folder(top: str, seen: set) -> Iterator[Tuple[str, Optional[str], Optional[str]]]:
    """(path, error, kind) under a folder, depth first, entries in natural order, hidden
    entries skipped; files are picked up by name (images by extension, .npy, IDX, shards). A
    folder that cannot be listed or a symlink loop is one error; the rest goes on."""
    try:
        st = os.stat(top)
    except OSError as e:
        yield top, e.strerror or str(e), None
        return
    if (st.st_dev, st.st_ino) in seen:
        yield top, "symlink loop: this folder is already being read", None
        return
    seen = seen | {(st.st_dev, st.st_ino)}
    try:
        with os.scandir(top) as it:
            entries = [(e.name, _is_dir(e)) for e in it if not e.name.startswith(".")]
    except OSError as e:
        yield top, f"cannot list the folder: {e.strerror or e}", None
        return
    entries.sort(key=lambda t: natural_key(t[0]))
    # os.path.join's result for plain entry names, without its cost per file
    prefix = os.path.join(top, "")
    for name, is_dir in entries:
        path = prefix + name
        if is_dir:
            yield from _walk_folder(path, seen)
            continue
        k = _kind_of_name(name.lower())
        if k != "unknown":
            yield path, None, k
        elif os.path.islink(path) and not os.path.exists(path):
            yield path, "broken symbolic link", None


def walk(sources) -> Iterator[Tuple[str, Optional[str], Optional[str]]]:
    """(path, error, kind by name) for each input the sources name; see expand."""
    if isinstance(sources, (str, bytes, os.PathLike)):
        sources = [sources]
    for src in sources:
        name = os.fsdecode(src)
        if os.path.isdir(name):
            yield from _walk_folder(name, frozenset())
        elif not os.path.lexists(name) and _GLOB_CHARS.search(name):
            matches = sorted(glob.glob(name, recursive=True), key=natural_key)
            if not matches:
                yield name, "no such file (the pattern matches nothing)", None
            for m in matches:
                if os.path.isdir(m):
                    yield from _walk_folder(m, frozenset())
                else:
                    yield m, None, kind(m)
        else:
            yield name, None, kind(name)


def expand(sources) -> Iterator[str]:
    """The file paths a list of sources names, in the order predict_files reads them: folders
    walked recursively in natural order (img2 before img10; hidden entries skipped; images,
    .npy, IDX and shards picked up by name), glob patterns expanded, files passed through
    unopened. A path that does not exist or cannot be listed is yielded too, so that
    predict_files on it gives an error row."""
    for path, _, _ in walk(sources):
        yield path


def count(sources) -> Optional[int]:
    """How many inputs the sources hold, when that is cheap to know (files, folders, IDX and
    .npy headers, zip directories); None when a tar stream would have to be read."""
    total = 0
    for path, err, k in walk(sources):
        if err:
            total += 1
            continue
        try:
            if k == "unknown":
                k = sniff(path)
            if k == "idx":
                shape = containers.idx_shape(path)
                total += shape[0] if len(shape) == 3 else 1
            elif k == "npy":
                a, single = containers.open_npy(path)
                total += 1 if single else len(a)
            elif k == "shard":
                with open(path, "rb") as f:
                    if not f.read(2).startswith(b"PK"):
                        return None
                with zipfile.ZipFile(path) as z:
                    total += sum(1 for i in z.infolist()
                                 if not i.is_dir() and kind(i.filename) == "image")
            else:
                total += 1
        except Exception:
            total += 1
    return total
