"""Compressed producer batches: gzip always; snappy, lz4 and zstd when their packages are installed.

Only the records part of a batch (after ``recordsCount``) is compressed.
Each codec is inflated with a hard ceiling on the output (``limit``), so a
small batch cannot expand into gigabytes (a "zip bomb"): gzip through
zlib's ``max_length``, lz4 through ``LZ4FrameDecompressor(max_length)``, zstd
through a bounded stream read, snappy by reading each block's declared
length before inflating it. The optional packages are the ones the Python
Kafka clients use themselves: ``lz4``, ``zstandard`` and ``cramjam``.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Final

GZIP: Final = 1
SNAPPY: Final = 2
LZ4: Final = 3
ZSTD: Final = 4
CODEC_NAMES: Final = {0: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}
#: The package each optional codec needs.
PACKAGES: Final = {SNAPPY: "cramjam", LZ4: "lz4", ZSTD: "zstandard"}
#: Kafka's Java client frames snappy the way snappy-java does ("xerial").
_XERIAL_MAGIC: Final = b"\x82SNAPPY\x00"
_XERIAL_HEADER: Final = 16


class Unsupported(Exception):
    """The codec is unknown, or its package is not installed."""


class Corrupt(Exception):
    """The compressed bytes do not inflate."""


class TooLarge(Exception):
    """The data inflates past the limit."""


def available(codec: int) -> bool:
    """Whether batches of ``codec`` can be inflated here (its package imports)."""
    try:
        if codec == SNAPPY:
            import cramjam  # noqa: F401
        elif codec == LZ4:
            import lz4.frame  # noqa: F401
        elif codec == ZSTD:
            import zstandard  # noqa: F401
        else:
            return codec == GZIP
    except ImportError:
        return False
    return True


def inflate(codec: int, data: bytes, limit: int) -> bytes:
    """The records part of a batch compressed with ``codec``, at most ``limit`` bytes."""
    if not available(codec):
        name = CODEC_NAMES.get(codec, f"codec {codec}")
        package = PACKAGES.get(codec)
        hint = f" (install the {package!r} package)" if package else ""
        raise Unsupported(f"{name} batches are not supported here{hint}")
    try:
        if codec == GZIP:
            return _gunzip(data, limit)
        if codec == LZ4:
            return _lz4(data, limit)
        if codec == ZSTD:
            return _zstd(data, limit)
        return _snappy(data, limit)
    except (TooLarge, Corrupt):
        raise
    except Exception as exc:  # each library raises its own error types
        raise Corrupt(f"the {CODEC_NAMES[codec]} data is corrupt: {exc}") from None


def _gunzip(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header, auto-detected
    out = inflater.decompress(data, limit)
    if inflater.unconsumed_tail:
        raise TooLarge(f"the batch inflates past {limit} bytes")
    return out


def _lz4(data: bytes, limit: int) -> bytes:
    import lz4.frame

    inflater = lz4.frame.LZ4FrameDecompressor()
    out: bytes = inflater.decompress(data, max_length=limit + 1)
    if len(out) > limit:
        raise TooLarge(f"the batch inflates past {limit} bytes")
    return out


def _zstd(data: bytes, limit: int) -> bytes:
    import zstandard

    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
        out: bytes = reader.read(limit + 1)
    if len(out) > limit:
        raise TooLarge(f"the batch inflates past {limit} bytes")
    return out


def _snappy(data: bytes, limit: int) -> bytes:
    import cramjam

    if data.startswith(_XERIAL_MAGIC):
        blocks = []
        pos = _XERIAL_HEADER
        while pos < len(data):
            if pos + 4 > len(data):
                raise Corrupt("a snappy block header is cut short")
            (size,) = struct.unpack_from(">i", data, pos)
            blocks.append(data[pos + 4 : pos + 4 + size])
            pos += 4 + size
    else:
        blocks = [data]
    total = sum(cramjam.snappy.decompress_raw_len(block) for block in blocks)
    if total > limit:
        raise TooLarge(f"the batch inflates past {limit} bytes")
    return b"".join(bytes(cramjam.snappy.decompress_raw(block)) for block in blocks)
