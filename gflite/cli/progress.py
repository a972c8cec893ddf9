"""The progress bar ``gflite`` draws on a terminal's stderr."""
from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Optional

from gflite.cli.report import clock, length

if TYPE_CHECKING:
    from gflite import pipeline


class Bar:
    """tqdm on stderr: chunks done, seconds of audio made, and an ETA by characters.

    The ETA counts characters, not chunks (chunks grow from small to full
    size), and only those synthesised in this run (cached chunks are instant).
    """

    def __init__(self, plan: pipeline.Plan) -> None:
        import tqdm

        # tqdm's monitor thread would keep the local executor from forking its workers cheaply.
        tqdm.tqdm.monitor_interval = 0
        self.plan = plan
        self.started = time.monotonic()
        self.fresh = 0
        try:
            known = os.get_terminal_size(sys.stderr.fileno()).columns > 0
        except (OSError, ValueError):
            known = False
        # A terminal that does not know its size (a bare pty) says 0x0, and tqdm would draw nothing.
        size = {"dynamic_ncols": True} if known else {"ncols": 80, "nrows": 24}
        # Redrawn on every chunk (a few a second at most), so the last state is always shown.
        self.bar = tqdm.tqdm(total=plan.characters, file=sys.stderr, leave=False, mininterval=0, miniters=1,
                             desc=self._text(0, 0.0, None), bar_format="{percentage:3.0f}%|{bar}| {desc}", **size)

    def _text(self, chunks: int, audio: float, eta: Optional[float]) -> str:
        left = "?" if eta is None else clock(eta)
        return (f"{chunks}/{self.plan.chunks} chunks, {length(audio)} audio, "
                f"{clock(time.monotonic() - self.started)} elapsed, ETA {left}")

    def update(self, p: pipeline.Progress) -> None:
        if not p.from_cache:
            self.fresh += p.characters
        eta = None
        spent = time.monotonic() - self.started
        if self.fresh and spent > 0:
            eta = (self.plan.characters - p.characters_done) * spent / self.fresh
        self.bar.set_description_str(self._text(p.chunks_done, p.audio_seconds, eta), refresh=False)
        self.bar.update(p.characters)

    def close(self) -> None:
        self.bar.close()
