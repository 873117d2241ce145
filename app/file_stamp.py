"""A stamp inside a downloaded file that changes its bytes, never what it shows.

A download button (Panel's ``FileDownload``) sends a file to the browser as a data URL, and the browser
saves it when that URL changes: a second click that built the same bytes (the same figure, the same
movie) would download nothing.  Each export therefore carries a per-download comment in the place
its format keeps comments: an HTML/SVG comment at the end, a PNG ``tEXt`` chunk before ``IEND``, a GIF
comment extension before the trailer, an MP4 ``free`` box at the end.
"""

from __future__ import annotations

import struct
import zlib


def _png(data: bytes, text: bytes) -> bytes:
    body = b"tEXt" + b"Comment\0" + text
    chunk = struct.pack(">I", len(text) + 8) + body + struct.pack(">I", zlib.crc32(body))
    return data[:-12] + chunk + data[-12:]  # IEND is the last 12 bytes


def _gif(data: bytes, text: bytes) -> bytes:
    blocks = b"".join(bytes([len(text[i:i + 255])]) + text[i:i + 255] for i in range(0, len(text), 255))
    return data[:-1] + b"\x21\xfe" + blocks + b"\x00" + data[-1:]  # before the trailer 0x3B


def stamp(data: bytes, fmt: str, text: str) -> bytes:
    """``data`` (a file of format ``fmt``: html, svg, png, gif or mp4) with ``text`` as a comment."""
    raw = text.encode("ascii", "replace")
    if fmt in ("html", "svg"):
        return data + b"\n<!-- " + raw.replace(b"--", b"- -") + b" -->\n"
    if fmt == "png":
        return _png(data, raw)
    if fmt == "gif":
        return _gif(data, raw)
    if fmt == "mp4":
        return data + struct.pack(">I", len(raw) + 8) + b"free" + raw
    raise ValueError(f"no stamp for .{fmt} files")


__all__ = ["stamp"]
