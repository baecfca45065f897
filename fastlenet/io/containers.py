"""Files that hold many images, read as bounded streams: IDX (gzipped or not), .npy (memory-mapped),
.tar/.tar.gz/.zip shards (members read in one forward pass, never extracted).

    open_idx(path)          (file, dtype, shape) after checking the header
    iter_idx(path, chunk)   (start index, (m, H, W) array) chunks of an IDX image file
    read_idx(path)          a whole IDX file -> ndarray
    open_npy(path)          a .npy file memory-mapped -> (images, single)
    iter_shard(path)        (member name, bytes, error) of the image members of a shard

Nothing here decodes pixels (decode.py) or allocates what a header declares: IDX files are read
in chunks, shard members are refused above a size cap before they are read.
"""
from __future__ import annotations

import gzip
import os
import zipfile
import zlib
from typing import Iterator, Optional, Tuple

import numpy as np

from fastlenet.io.kinds import MAX_FILE_BYTES, _is_image_name, kind

# ---- IDX ------------------------------------------------------------------------------------
# IDX: magic 0x00 0x00 <type> <ndim>, then ndim big-endian uint32 sizes, then the data.
IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
# Refuse headers that declare absurd sizes (a corrupt or hostile file) before allocating.
IDX_MAX_BYTES = 1 << 34


def open_idx(name: str):
    """Open an IDX file (gzip detected by its magic bytes) -> (file, dtype, shape).
    The caller closes the file. ValueError for a bad header, naming what was found."""
    with open(name, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    f = gzip.open(name, "rb") if gz else open(name, "rb")
    try:
        head = f.read(4)
        if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] not in IDX_TYPES or head[3] == 0:
            raise ValueError(f"not an IDX file (expected magic 0x0000TTNN with type TT in "
                             f"08/09/0B/0C/0D/0E and NN dimensions; found 0x{head.hex()})")
        ndim = head[3]
        dims = f.read(4 * ndim)
        if len(dims) < 4 * ndim:
            raise ValueError(f"truncated IDX header (declares {ndim} dimensions)")
        shape = tuple(int(d) for d in np.frombuffer(dims, ">u4"))
        dtype = IDX_TYPES[head[2]]
        nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        if nbytes > IDX_MAX_BYTES:
            raise ValueError(f"IDX header declares shape {shape}, {nbytes:,} bytes: corrupt?")
        if not gz:
            actual = os.fstat(f.fileno()).st_size - 4 - 4 * ndim
            if actual != nbytes:
                raise ValueError(f"IDX size mismatch: header declares shape {shape} "
                                 f"({nbytes:,} bytes of data), the file has {actual:,}"
                                 f" ({'truncated' if actual < nbytes else 'trailing bytes'})")
        return f, dtype, shape
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        f.close()
        raise ValueError(f"cannot read the gzip stream ({e}); the file is truncated or "
                         f"corrupt") from None
    except ValueError:
        f.close()
        raise
    except Exception as e:  # zlib.error from a damaged deflate stream
        f.close()
        raise ValueError(f"cannot read the gzip stream ({type(e).__name__}: {e}); the file "
                         f"is corrupt") from None
    except BaseException:
        f.close()
        raise


def idx_shape(name: str) -> tuple:
    """The shape an IDX file's header declares (checked as open_idx checks it)."""
    f, _, shape = open_idx(name)
    f.close()
    return shape


def read_exact(f, nbytes: int, piece: int = 1 << 20) -> bytes:
    """Up to nbytes from f, in pieces, so that memory follows the bytes that exist rather than
    what a header declares (BufferedReader.read(n) allocates n bytes first)."""
    parts, left = [], nbytes
    while left > 0:
        b = f.read(min(piece, left))
        if not b:
            break
        parts.append(b)
        left -= len(b)
    return b"".join(parts)


def read_idx_data(f, nbytes: int) -> bytes:
    """read_exact on an IDX stream, whose damage (a truncated or corrupt gzip stream, zlib.error)
    becomes one ValueError."""
    try:
        return read_exact(f, nbytes)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ValueError(f"cannot read the gzip stream ({e}); the file is truncated or "
                         f"corrupt") from None
    except Exception as e:  # zlib.error
        raise ValueError(f"cannot read the gzip stream ({type(e).__name__}: {e}); the "
                         f"file is corrupt") from None


def read_idx(path) -> np.ndarray:
    """An IDX file (MNIST's format; gzipped or not, detected by content) -> ndarray with the
    header's shape and native-endian dtype. ValueError names what is wrong (magic, truncation,
    trailing bytes, corrupt gzip); OSError for a missing or unreadable file."""
    name = os.fspath(path)
    f, dtype, shape = open_idx(name)
    with f:
        nbytes = int(np.prod(shape)) * dtype.itemsize
        data = read_idx_data(f, nbytes)  # never f.read(n): it allocates n up front
        extra = read_idx_data(f, 1)
    if len(data) != nbytes or extra:
        raise ValueError(f"IDX size mismatch: header declares shape {shape} ({nbytes:,} bytes "
                         f"of data), found {len(data) + len(extra):,}"
                         f"{'+' if extra else ''} ({'trailing bytes' if extra else 'truncated'})")
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def iter_idx(path: str, chunk: int = 4096) -> Iterator[Tuple[int, np.ndarray]]:
    """(start, (m, rows, cols) array) chunks of an IDX image file (gzipped or not). Memory is
    bounded by `chunk` images whatever the header declares. ValueError for a bad header, for
    labels or other non-image data, and (after the chunks before it) for truncation."""
    f, dtype, shape = open_idx(path)
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
