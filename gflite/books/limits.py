"""Caps for hostile books, and a zip reader that enforces them.

A book is data from another party: its zip directory may lie about sizes, its
member names may climb out of the archive, and a few kilobytes may inflate to
gigabytes. Nothing here trusts a declared size: every member is read through
a bounded read that stops one byte past the cap.
"""
from __future__ import annotations

import posixpath
import struct
import zipfile
import zlib
from pathlib import Path

from gflite.errors import BookError, BookProblem
from gflite.text import reading_input

# A long novel's EPUB is a few MB unpacked; the biggest reference works reach
# tens. These caps leave ample room and stop a bomb long before memory does.
MAX_MEMBER_BYTES = 64 << 20  # one member, decompressed
MAX_TOTAL_BYTES = 256 << 20  # everything read from one book, decompressed
MAX_RATIO = 200  # decompressed / compressed, for members past RATIO_FLOOR
RATIO_FLOOR = 1 << 20  # small members may compress as well as they like
MAX_MEMBERS = 20_000
MAX_TEXT_FILE_BYTES = 64 << 20  # a .md or .html book
MAX_CHAPTERS = 10_000
_READ_STEP = 1 << 16


def is_external(href: str) -> bool:
    """A link to the web or another scheme, not to a member of the book."""
    from urllib.parse import urlsplit

    parts = urlsplit(href)
    return bool(parts.scheme or parts.netloc)


def member_path(base: str, href: str, *, name: str) -> str:
    """The archive path ``href`` (relative to member ``base``) points at.

    Fragment and query are dropped, %-escapes decoded. A path that leaves the
    archive root is refused, as is an absolute one."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(href)
    if parts.scheme or parts.netloc:
        raise BookError(f"{name}: {href!r} points outside the book", BookProblem.UNSAFE_PATH)
    path = unquote(parts.path)
    if path.startswith("/"):
        raise BookError(f"{name}: absolute path {path!r} in the book", BookProblem.UNSAFE_PATH)
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(base), path))
    if joined == ".." or joined.startswith("../") or joined.startswith("/"):
        raise BookError(f"{name}: {href!r} climbs out of the book", BookProblem.UNSAFE_PATH)
    return joined


def _unsafe_name(n: str) -> bool:
    if n.startswith(("/", "\\")) or (len(n) > 1 and n[1] == ":"):
        return True
    return ".." in n.replace("\\", "/").split("/")


class SafeZip:
    """Read members of a zip with every cap enforced; all errors are BookError."""

    def __init__(self, path: Path) -> None:
        self.name = path.name
        self.total = 0
        try:
            with reading_input(path, "a book"):
                self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError, struct.error):
            raise BookError(f"{self.name} is not an EPUB (not a readable zip archive)", BookProblem.NOT_A_BOOK) from None
        infos = self._zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise BookError(f"{self.name} has {len(infos)} members (at most {MAX_MEMBERS})", BookProblem.TOO_LARGE)
        self._infos: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            if _unsafe_name(info.filename):
                raise BookError(
                    f"{self.name}: unsafe member name {info.filename!r} (absolute or with ..)",
                    BookProblem.UNSAFE_PATH,
                )
            self._infos.setdefault(info.filename, info)

    def __contains__(self, member: str) -> bool:
        return member in self._infos

    def close(self) -> None:
        self._zip.close()

    def names(self) -> list[str]:
        """The members, in the archive's order."""
        return list(self._infos)

    def info(self, member: str) -> zipfile.ZipInfo:
        return self._infos[member]

    def read(self, member: str, *, cap: int | None = None) -> bytes:
        """The member's bytes, at most ``cap`` (default MAX_MEMBER_BYTES) of them."""
        cap = min(cap if cap is not None else MAX_MEMBER_BYTES, MAX_MEMBER_BYTES)
        info = self._infos.get(member)
        if info is None:
            raise BookError(f"{self.name}: {member} is missing", BookProblem.MISSING)
        if info.flag_bits & 0x1:
            raise BookError(f"{self.name}: {member} is encrypted", BookProblem.DRM)
        # The compressed size bounds what zipfile feeds the decompressor, so it
        # is an honest denominator even when the declared sizes lie.
        packed = max(info.compress_size, 1)
        limit = min(cap, MAX_TOTAL_BYTES - self.total)
        out = bytearray()
        try:
            with self._zip.open(info) as f:
                while True:
                    step = f.read(min(_READ_STEP, limit + 1 - len(out)))
                    if not step:
                        break
                    out += step
                    if len(out) > limit:
                        self._bomb(member, cap, limit)
                    if len(out) > RATIO_FLOOR and len(out) > MAX_RATIO * packed:
                        raise BookError(
                            f"{self.name}: {member} inflates over {MAX_RATIO}:1 (a zip bomb?)",
                            BookProblem.ZIP_BOMB,
                        )
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError, struct.error, OSError) as e:
            # OSError: a corrupt directory's offsets make zipfile seek before the file's start.
            raise BookError(f"{self.name}: cannot unpack {member}: {e}", BookProblem.MALFORMED) from None
        except RuntimeError as e:  # zipfile's "File is encrypted, password required"
            raise BookError(f"{self.name}: cannot unpack {member}: {e}", BookProblem.DRM) from None
        self.total += len(out)
        return bytes(out)

    def _bomb(self, member: str, cap: int, limit: int) -> None:
        if limit < cap:
            what = f"the book unpacks to over {MAX_TOTAL_BYTES >> 20} MiB"
        else:
            what = f"{member} unpacks to over {_size(cap)}"
        raise BookError(f"{self.name}: {what} (a zip bomb?)", BookProblem.ZIP_BOMB)


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"
