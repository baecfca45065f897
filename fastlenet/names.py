"""How names are ordered and written, for every stage: the natural sort key (img2 before
img10, arr_2 before arr_10), file names fit for UTF-8 output, and how one input's row is named."""
from __future__ import annotations

import re
from typing import Optional

_DIGITS = re.compile(r"\d+")


def natural_key(name: str) -> str:
    """A compact natural sort key (img2 before img10): each run of digits becomes its length
    and the digits, so numbers compare by value; one str per name keeps a million-entry folder
    cheap to sort."""
    return _DIGITS.sub(_natural_run, name)


def _natural_run(m) -> str:
    digits = m.group().lstrip("0")
    return "%05d%s" % (len(digits), digits)


def safe_name(name: str) -> str:
    """A file name fit for UTF-8 output: bytes that are not UTF-8 (kept by Python as lone
    surrogates) become \\xNN escapes, so CSV and JSON stay valid whatever the file system holds."""
    if name.isascii():
        return name
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def row_name(source: str, member: Optional[str] = None, index: Optional[int] = None) -> str:
    """source, source:member (inside a shard) or source[index] (inside an IDX or .npy file):
    how every report names one input, in-process and on Dask alike."""
    if member is not None:
        return f"{source}:{member}"
    if index is not None:
        return f"{source}[{index}]"
    return source
