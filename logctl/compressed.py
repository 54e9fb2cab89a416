"""What a file holds before ship reads it: text, a compressed rotation, or binary to skip.

A rotation compressed by logrotate (``app.log.2.gz``; ``.xz``, ``.bz2``, ``.zst`` too) is a
finished file: it is decompressed once into an unlinked temporary file, and ship reads
that as it reads any file. It is known by its content (a hash of the compressed bytes),
not its inode, so the same archive renamed by the next rotation (``.2.gz`` to ``.3.gz``)
or copied elsewhere is not read again. Kinds are told by their magic bytes, not names.

A binary file (an executable, a database, ``wtmp``) would become garbage records: it is
told, as git tells one, by a NUL byte in its first 8 KiB, and skipped.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO, Protocol

SNIFF_BYTES = 8192
_CHUNK = 1 << 20
CONTENT_KEY_PREFIX = "z:"  # checkpoint keys of compressed files; others are "dev:inode"


class _Reader(Protocol):
    """A decompressing reader: gzip.GzipFile, lzma.LZMAFile, bz2.BZ2File, zstandard's stream reader."""

    def read(self, size: int = -1, /) -> bytes: ...
    def close(self) -> None: ...


def _gzip(raw: BinaryIO) -> _Reader:
    return gzip.GzipFile(fileobj=raw)


def _xz(raw: BinaryIO) -> _Reader:
    return lzma.LZMAFile(raw)


def _bzip2(raw: BinaryIO) -> _Reader:
    return bz2.BZ2File(raw)


def _zstd(raw: BinaryIO) -> _Reader:
    import zstandard  # the one kind the standard library cannot read (until Python 3.14)

    reader: _Reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return reader


# magic bytes, name, and how to open a decompressing reader over the raw file
_KINDS: tuple[tuple[bytes, str, Callable[[BinaryIO], _Reader]], ...] = (
    (b"\x1f\x8b", "gzip", _gzip),
    (b"\xfd7zXZ\x00", "xz", _xz),
    (b"BZh", "bzip2", _bzip2),
    (b"\x28\xb5\x2f\xfd", "zstd", _zstd),
)


def compression_of(head: bytes) -> str | None:
    """The compression whose magic bytes ``head`` starts with, or None."""
    name = next((name for magic, name, _ in _KINDS if head.startswith(magic)), None)
    if name == "bzip2" and not (head[3:4].isdigit() and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90")):
        return None  # a text line that starts with "BZh": a bzip2 stream has its level and a block magic next
    return name


def is_binary(head: bytes) -> bool:
    """Whether the first bytes of a file say it holds no text (a NUL among them, as git decides)."""
    return b"\x00" in head[:SNIFF_BYTES]


def content_key(fd: int) -> str:
    """The checkpoint key of a compressed file: a hash of all its bytes."""
    digest = hashlib.blake2b(digest_size=16)
    offset = 0
    while chunk := os.pread(fd, _CHUNK, offset):
        digest.update(chunk)
        offset += len(chunk)
    return CONTENT_KEY_PREFIX + digest.hexdigest()


class DecompressError(Exception):
    """A compressed file that cannot be read to its end (damaged, or still being written)."""


def decompressed(fd: int, kind: str, directory: str | None = None) -> int:
    """Decompress the file open on ``fd`` into an unlinked temporary file; return its fd, at 0.

    ``directory`` holds the temporary file (the state dir: on disk, not in a tmpfs in RAM).
    """
    opener = next(open_ for _, name, open_ in _KINDS if name == kind)
    out = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - its fd outlives this function
    try:
        with os.fdopen(os.dup(fd), "rb") as raw:
            reader = opener(raw)
            try:
                while chunk := reader.read(_CHUNK):
                    out.write(chunk)
            finally:
                reader.close()
        out.flush()
        result = os.dup(out.fileno())
    except (OSError, EOFError, lzma.LZMAError, ValueError) as exc:
        raise DecompressError(f"{kind}: {exc or type(exc).__name__}") from exc
    except Exception as exc:  # zstandard.ZstdError and kin: the library's own errors
        raise DecompressError(f"{kind}: {exc}") from exc
    finally:
        out.close()
    os.lseek(result, 0, os.SEEK_SET)
    return result
