"""PNG inspection for tests: which chunks a written file carries (metadata checks)."""

from __future__ import annotations

import struct


def png_chunks(data: bytes) -> list[bytes]:
    """The chunk types (b"IHDR", b"IDAT", b"eXIf", b"tEXt", ...) of a PNG file's bytes, in order."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kinds.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return kinds
