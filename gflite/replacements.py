"""``--replace FILE``: a plain pronunciation list, ``word → spoken form`` a line.

Applied to the text before chunking, so flite never sees the written form.
Each line is ``WORD → SPOKEN`` (``->`` or ``=`` work too); ``#`` starts a
comment line; blank lines are ignored. A word matches whole (not inside a
longer word), case-sensitively; all rules apply in one pass, longest word
first, so a spoken form is never replaced again.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gflite.errors import InputError

MAX_BYTES = 1 << 20
MAX_RULES = 100_000
_ARROW = re.compile(r"\s*(?:→|->|=)\s*")


@dataclass(frozen=True)
class Replacements:
    rules: tuple[tuple[str, str], ...]  # (written, spoken)

    def apply(self, text: str) -> tuple[str, int]:
        """``text`` with every rule applied, and how many words were replaced."""
        if not self.rules:
            return text, 0
        table = dict(self.rules)
        words = sorted(table, key=len, reverse=True)
        pattern = re.compile(r"(?<![\w'])(?:" + "|".join(map(re.escape, words)) + r")(?![\w'])")
        count = 0

        def sub(m: re.Match[str]) -> str:
            nonlocal count
            count += 1
            return table[m.group()]

        return pattern.sub(sub, text), count

    def normalised(self) -> Replacements:
        """The rules as flite reads them (ASCII, as ``gflite.text.normalise`` maps the text)."""
        from gflite.text import normalise

        out = []
        for written, spoken in self.rules:
            w, s = normalise(written)[0].strip(), normalise(spoken)[0].strip()
            if w:
                out.append((w, s))
        return Replacements(tuple(out))


def parse(data: str, *, name: str) -> Replacements:
    rules: dict[str, str] = {}
    for number, line in enumerate(data.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = _ARROW.split(line, maxsplit=1)
        if len(parts) != 2 or not parts[0].strip():
            raise InputError(f"{name} line {number}: expected 'word → spoken form'")
        written = parts[0].strip()
        if not line.isprintable():
            raise InputError(f"{name} line {number} has control characters")
        rules[written] = parts[1].strip()
        if len(rules) > MAX_RULES:
            raise InputError(f"{name} has over {MAX_RULES} replacements")
    return Replacements(tuple(rules.items()))


def read(path: str) -> Replacements:
    """Read a replacement list; InputError if it is not a small UTF-8 text file."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise InputError(f"cannot read replacements {path}: {e.strerror or e}") from None
    if len(data) > MAX_BYTES or b"\0" in data:
        raise InputError(f"{path} is not a replacement list (a text file of 'word → spoken form' lines)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text") from None
    return parse(text, name=Path(path).name)
