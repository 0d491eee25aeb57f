"""Mark one symbol-version requirement of an ELF shared object weak (VER_FLG_WEAK), so the
dynamic loader accepts a library that lacks that version; the symbols themselves must then
come from somewhere (a library added with patchelf --add-needed).

    python weak_verneed.py FILE VERSION      e.g. _C.abi3.so GLIBCXX_3.4.32

Exit 0 when the requirement is now weak (or already was); 1 when FILE requires no such
version (the workaround no longer applies to this file).
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

SHT_GNU_VERNEED = 0x6FFFFFFE
VER_FLG_WEAK = 0x2


def weaken(data: bytearray, version: str) -> bool | None:
    """True: made weak; False: already weak; None: no such requirement."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)

    def section(index: int) -> tuple[int, int, int, int]:
        """(type, file offset, link, info) of a section header."""
        base = shoff + index * shentsize
        kind = struct.unpack_from("<I", data, base + 4)[0]
        offset = struct.unpack_from("<Q", data, base + 24)[0]
        link, info = struct.unpack_from("<II", data, base + 40)
        return kind, offset, link, info

    for index in range(shnum):
        kind, offset, link, count = section(index)
        if kind != SHT_GNU_VERNEED:
            continue
        strings = section(link)[1]
        need = offset
        for _ in range(count):
            _, aux_count, _, aux, next_need = struct.unpack_from("<HHIII", data, need)
            entry = need + aux
            for _ in range(aux_count):
                _, flags, _, name, next_aux = struct.unpack_from("<IHHII", data, entry)
                end = data.index(b"\0", strings + name)
                if data[strings + name : end].decode() == version:
                    if flags & VER_FLG_WEAK:
                        return False
                    struct.pack_into("<H", data, entry + 4, flags | VER_FLG_WEAK)
                    return True
                entry += next_aux
            need += next_need
    return None


def main(path: str, version: str) -> int:
    data = bytearray(Path(path).read_bytes())
    result = weaken(data, version)
    if result is None:
        print(f"{path} requires no {version}", file=sys.stderr)
        return 1
    if result:
        Path(path).write_bytes(data)
    print(f"{path}: {version} is {'now' if result else 'already'} a weak requirement")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
