"""What the pipeline can read, as named items, lazily and in a stable order.

    expand(sources)          paths, folders (recursive, natural order), globs -> file paths
    kind(path)               'image', 'shard', 'idx', 'npy' (by name; content decides when the
                             name says nothing)
    iter_idx(path, chunk)    (start index, uint8/... (m, H, W) array) chunks of an IDX file
    iter_npy(path, chunk)    the same for a .npy file (memory-mapped)
    iter_shard(path)         (member name, bytes, error) of the image members of a .tar,
                             .tar.gz or .zip, read as a stream, never extracted

Nothing here decodes pixels (images.py) or allocates what a header declares: IDX files are read
in chunks, shard members are refused above a size cap before they are read.
"""
from __future__ import annotations

import glob
import gzip
import os
import re
import zlib
from typing import Iterator, Optional, Tuple

import numpy as np

IMAGE_EXTENSIONS = frozenset(".png .jpg .jpeg .bmp .gif .tif .tiff .webp .pgm .ppm .pbm .pnm"
                             .split())
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
# A shard member or image file larger than this is refused before it is read (a scan of one
# digit is kilobytes; a 100-megapixel RGB TIFF is 300 MB).
MAX_FILE_BYTES = 256 << 20
_GLOB_CHARS = re.compile(r"[*?[]")
_DIGITS = re.compile(r"\d+")


def _natural(name: str) -> str:
    """A compact natural sort key (img2 before img10): each run of digits becomes its length
    and the digits, so numbers compare by value; one str per name keeps a million-entry folder
    cheap to sort."""
    return _DIGITS.sub(_natural_run, name)


def _natural_run(m) -> str:
    digits = m.group().lstrip("0")
    return "%05d%s" % (len(digits), digits)


def kind(path: str) -> str:
    """'shard', 'npy', 'idx', 'image' by name, or 'unknown' (the content decides)."""
    return _kind_of_name(os.path.basename(path).lower())


def _kind_of_name(low: str) -> str:
    """kind() of a lower-case file name (no folder). An image extension wins over "idx" in
    the name (idx_0001.png is an image)."""
    if _is_image_name(low):
        return "image"
    if low.endswith(SHARD_SUFFIXES):
        return "shard"
    if low.endswith(".npy"):
        return "npy"
    if "idx" in low or "-ubyte" in low:
        return "idx"
    return "unknown"


def _is_image_name(low: str) -> bool:
    """A lower-case file name with an image extension (os.path.splitext's: leading dots are
    not one), without splitext's cost per file."""
    dot = low.rfind(".")
    return dot > 0 and low[dot:] in IMAGE_EXTENSIONS and low[:dot].strip(".") != ""


def sniff(path: str) -> str:
    """The kind of a file whose name says nothing, from its first bytes. OSError if it cannot
    be opened."""
    with open(path, "rb") as f:
        head = f.read(264)
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "shard"
    if head[257:262] == b"ustar":
        return "shard"
    if head[:2] in (b"\x1f\x8b", b"\x00\x00"):
        return "idx"
    return "image"


def _is_dir(entry) -> bool:
    """DirEntry.is_dir (free from the directory listing, a stat only for symlinks); an entry
    that cannot be examined counts as a file, which then fails to open: one error."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _walk(top: str, seen: set) -> Iterator[Tuple[str, Optional[str], Optional[str]]]:
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
    entries.sort(key=lambda t: _natural(t[0]))
    # os.path.join's result for plain entry names, without its cost per file
    prefix = os.path.join(top, "")
    for name, is_dir in entries:
        path = prefix + name
        if is_dir:
            yield from _walk(path, seen)
            continue
        k = _kind_of_name(name.lower())
        if k != "unknown":
            yield path, None, k
        elif os.path.islink(path) and not os.path.exists(path):
            yield path, "broken symbolic link", None


def _expand(sources) -> Iterator[Tuple[str, Optional[str], Optional[str]]]:
    """(path, error, kind by name) for each input the sources name; see expand."""
    if isinstance(sources, (str, bytes, os.PathLike)):
        sources = [sources]
    for src in sources:
        name = os.fsdecode(src)
        if os.path.isdir(name):
            yield from _walk(name, frozenset())
        elif not os.path.lexists(name) and _GLOB_CHARS.search(name):
            matches = sorted(glob.glob(name, recursive=True), key=_natural)
            if not matches:
                yield name, "no such file (the pattern matches nothing)", None
            for m in matches:
                if os.path.isdir(m):
                    yield from _walk(m, frozenset())
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
    for path, _, _ in _expand(sources):
        yield path


# ---- IDX ------------------------------------------------------------------------------------
def iter_idx(path: str, chunk: int = 4096) -> Iterator[Tuple[int, np.ndarray]]:
    """(start, (m, rows, cols) array) chunks of an IDX image file (gzipped or not). Memory is
    bounded by `chunk` images whatever the header declares. ValueError for a bad header, for
    labels or other non-image data, and (after the chunks before it) for truncation."""
    from fastlenet.images import _open_idx, read_idx_data

    f, dtype, shape = _open_idx(path)
    with f:
        if len(shape) != 3:
            what = "labels" if len(shape) == 1 else f"{len(shape)}-D data"
            raise ValueError(f"an IDX file of {what} (shape {shape}), not images (expected "
                             f"N x rows x cols, magic 0x00000803)")
        n, rows, cols = shape
        item = rows * cols * dtype.itemsize
        if item == 0 and n:
            raise ValueError(f"IDX header declares empty images (shape {shape})")
        chunk = max(1, min(chunk, (64 << 20) // max(item, 1)))
        start = 0
        while start < n:
            m = min(chunk, n - start)
            data = read_idx_data(f, m * item)
            got = len(data) // item
            if got:
                yield start, np.frombuffer(data[:got * item], dtype).reshape(got, rows, cols)
            if got < m:
                raise ValueError(f"truncated IDX file: the header declares {n} images, the "
                                 f"file holds {start + got}")
            start += m


# ---- .npy -----------------------------------------------------------------------------------
def open_npy(path: str) -> Tuple[np.ndarray, bool]:
    """A .npy file memory-mapped -> (images, single): a batch (N, H, W) view, or one image
    (single=True, shape (1, H, W)). Colour (..., 3/4) and (N, 1, H, W) are accepted.
    ValueError names the shape when it is neither."""
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"cannot read the .npy array ({e})") from None
    except Exception as e:  # a mangled header raises what numpy's parser happens to raise
        raise ValueError(f"cannot read the .npy array ({type(e).__name__}: {e})") from None
    if a.dtype.kind not in "uifb":
        raise ValueError(f"a .npy array of dtype {a.dtype}, not numeric pixels")
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4)):
        return a[None], True
    if a.ndim == 3 and a.shape[-1] == 1 and a.shape[0] > 4:
        return a[..., 0][None], True
    if a.ndim == 3 or (a.ndim == 4 and a.shape[-1] in (1, 3, 4)):
        return (a[..., 0] if a.ndim == 4 and a.shape[-1] == 1 else a), False
    if a.ndim == 4 and a.shape[1] == 1:
        return a[:, 0], False
    raise ValueError(f"an array of shape {a.shape} is neither an image (H, W), (H, W, C) nor a "
                     f"batch (N, H, W), (N, 1, H, W), (N, H, W, C)")


# ---- shards ---------------------------------------------------------------------------------
def iter_shard(path: str, max_bytes: int = MAX_FILE_BYTES
               ) -> Iterator[Tuple[str, Optional[bytes], Optional[str]]]:
    """(member name, bytes, None) for each image member of a .tar / .tar.gz / .zip, in archive
    order (a tar is read as one forward stream, see iter_tar; a zip through zipfile), never
    extracted; (member, None, error) for a member that is too large. Members that are not
    images by name are skipped. A corrupt or truncated archive raises ValueError after the
    members before the damage."""
    import zipfile

    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise ValueError(f"not a readable zip archive ({e})") from None
        except Exception as e:  # NotImplementedError (zip version), struct.error...
            raise ValueError(f"not a readable zip archive ({type(e).__name__}: {e})") from None
        with zf:
            for info in zf.infolist():
                if info.is_dir() or kind(info.filename) != "image":
                    continue
                if info.file_size > max_bytes:
                    yield info.filename, None, (f"member of {info.file_size:,} bytes (the "
                                                f"limit is {max_bytes:,})")
                    continue
                try:
                    with zf.open(info) as m:
                        data = m.read(max_bytes + 1)
                except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError,
                        NotImplementedError) as e:
                    yield info.filename, None, f"cannot read the member ({e})"
                    continue
                except Exception as e:  # zlib.error, lzma.LZMAError...
                    yield info.filename, None, f"cannot read the member ({type(e).__name__}: {e})"
                    continue
                if len(data) > max_bytes:
                    yield info.filename, None, f"member larger than the limit {max_bytes:,}"
                    continue
                yield info.filename, data, None
        return
    yield from iter_tar(path, max_bytes)


def _tar_size(hdr: bytes) -> int:
    """The size field of a tar header: octal, or GNU base-256 for large sizes."""
    field = hdr[124:136]
    if field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    text = field.replace(b"\0", b" ").strip()
    return int(text, 8) if text else 0


def _tar_name(hdr: bytes) -> str:
    name = hdr[0:100].split(b"\0", 1)[0]
    if hdr[257:262] == b"ustar":
        prefix = hdr[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "surrogateescape")


def _byte_sum(b: bytes) -> int:
    """The sum of up to 256 bytes, in C: adler32's low half is 1 + the sum modulo 65521, exact
    below 65521 (256 bytes sum to at most 65280). A Python sum over a 512-byte tar header cost
    a third of a member's reading."""
    return (zlib.adler32(b) & 0xFFFF) - 1


def _tar_checksum_ok(hdr: bytes) -> bool:
    """POSIX: the unsigned sum of the header with the checksum field read as spaces (some old
    writers summed signed bytes: accepted too)."""
    ck = hdr[148:156]
    try:
        want = int(ck.replace(b"\0", b" ").strip(), 8)
    except ValueError:
        return False
    if want == _byte_sum(hdr[:256]) + _byte_sum(hdr[256:]) - _byte_sum(ck) + 8 * 32:
        return True
    body = hdr[:148] + b" " * 8 + hdr[156:]
    return sum(b - 256 if b > 127 else b for b in body) == want


def _pax_records(data: bytes) -> dict:
    """`LEN key=value\n` records of a pax extended header -> {key: value bytes}."""
    out, i = {}, 0
    while i < len(data):
        sp = data.find(b" ", i)
        if sp < 0:
            break
        try:
            n = int(data[i:sp])
        except ValueError:
            raise ValueError("corrupt archive (a bad pax record)") from None
        if n <= 0 or i + n > len(data):
            raise ValueError("corrupt archive (a bad pax record)")
        key, _, value = data[sp + 1:i + n - 1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value
        i += n
    return out


def iter_tar(path: str, max_bytes: int = MAX_FILE_BYTES
             ) -> Iterator[Tuple[str, Optional[bytes], Optional[str]]]:
    """(member, bytes, None) for each image member of a .tar or .tar.gz, read as one forward
    stream; (member, None, error) for a member above max_bytes (skipped unread) or of a kind
    that cannot be read (sparse). A truncated or corrupt stream raises ValueError after the
    members before the damage.

    Why not tarfile: its per-member header parsing (TarInfo objects, pax handling) cost 80 us
    of CPU per member here, as much as decoding a small PNG and 8x reading the same bytes
    from a file, and it ran in the main process. This walk reads only what the pipeline needs
    from each 512-byte header: name (ustar prefix, GNU long names, pax "path"), size (octal or
    base-256; pax "size"), type, and checks the header checksum, as tarfile does."""
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    f = gzip.open(path, "rb") if gz else open(path, "rb", buffering=1 << 18)
    from fastlenet.images import read_exact

    zero = b"\0" * 512
    read = f.read
    try:
        with f:
            long_name, pax, glob_pax = None, {}, {}
            while True:
                hdr = read(512)
                if len(hdr) < 512:
                    if not hdr:
                        return  # end of archive (a missing end marker is tolerated, as tarfile)
                    raise ValueError("truncated archive (a partial header)")
                if hdr == zero:
                    return
                if not _tar_checksum_ok(hdr):
                    raise ValueError("corrupt archive (a header fails its checksum)")
                try:
                    n = _tar_size(hdr)
                except ValueError:
                    raise ValueError("corrupt archive (a header's size field is not a "
                                     "number)") from None
                flag = hdr[156:157]
                rec = {**glob_pax, **pax} if glob_pax else pax
                if "size" in rec and flag not in (b"x", b"g"):
                    try:
                        n = int(rec["size"])
                    except ValueError:
                        raise ValueError("corrupt archive (a bad pax size)") from None
                if n < 0:
                    raise ValueError("corrupt archive (a negative size)")
                padded = -(-n // 512) * 512
                if flag in (b"x", b"g", b"L"):
                    if n > (1 << 20):
                        raise ValueError(f"corrupt archive (an extended header of {n:,} bytes)")
                    data = read(padded)
                    if len(data) < n:
                        raise ValueError("truncated archive (a partial extended header)")
                    if flag == b"x":
                        pax = _pax_records(data[:n])
                    elif flag == b"g":
                        glob_pax.update(_pax_records(data[:n]))
                    else:
                        long_name = data[:n].split(b"\0", 1)[0].decode("utf-8",
                                                                       "surrogateescape")
                    continue
                name = (rec["path"].decode("utf-8", "surrogateescape") if "path" in rec
                        else long_name if long_name is not None else _tar_name(hdr))
                long_name, pax = None, {}
                regular = flag in (b"0", b"\0", b"7")
                image = _is_image_name(name[name.rfind("/") + 1:].lower())  # names use "/"
                wanted = regular and image
                if not wanted or n > max_bytes:
                    if regular and wanted:
                        yield name, None, f"member of {n:,} bytes (the limit is {max_bytes:,})"
                    elif flag == b"S" and image:
                        yield name, None, "a sparse member (not supported)"
                    left = padded
                    while left:  # skip unread
                        got = len(f.read(min(left, 1 << 20)))
                        if not got:
                            if left <= padded - n:
                                break  # only the last member's padding is missing
                            raise ValueError(f"truncated archive: member {name!r} is cut")
                        left -= got
                    continue
                # read_exact's pieces bound what a corrupt size field can allocate
                data = read(padded) if padded <= 1 << 20 else read_exact(f, padded)
                if len(data) < n:
                    raise ValueError(f"truncated archive: member {name!r} declares {n:,} "
                                     f"bytes, {len(data):,} found")
                yield name, data[:n], None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ValueError(f"corrupt or truncated archive ({e})") from None
    except Exception as e:  # zlib.error from the gzip layer
        if isinstance(e, (ValueError, GeneratorExit)):
            raise
        raise ValueError(f"corrupt or truncated archive ({type(e).__name__}: {e})") from None


def count(sources) -> Optional[int]:
    """How many inputs the sources hold, when that is cheap to know (files, folders, IDX and
    .npy headers, zip directories); None when a tar stream would have to be read."""
    total = 0
    for path, err, k in _expand(sources):
        if err:
            total += 1
            continue
        try:
            if k == "unknown":
                k = sniff(path)
            if k == "idx":
                from fastlenet.images import _open_idx

                f, _, shape = _open_idx(path)
                f.close()
                total += shape[0] if len(shape) == 3 else 1
            elif k == "npy":
                a, single = open_npy(path)
                total += 1 if single else len(a)
            elif k == "shard":
                with open(path, "rb") as f:
                    if not f.read(2).startswith(b"PK"):
                        return None
                import zipfile

                with zipfile.ZipFile(path) as z:
                    total += sum(1 for i in z.infolist()
                                 if not i.is_dir() and kind(i.filename) == "image")
            else:
                total += 1
        except Exception:
            total += 1
    return total


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
