"""Results: one Prediction per input, in input order; an error is a row, never an exception."""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from fastlenet.names import row_name

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
        return row_name(self.source, self.member, self.index)


def make_rows(slots, proba: Optional[np.ndarray], top_k: int) -> list:
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


def error_text(e: Exception) -> str:
    """One input's error as its row's message."""
    if isinstance(e, OSError):
        return e.strerror or str(e)
    if isinstance(e, (ValueError, ImportError)):
        return str(e)
    # whatever else a hostile file makes a decoder raise: one row
    return f"cannot decode the image ({type(e).__name__}: {e})"
