"""gflite: distributed text-to-speech with flite compiled to WASI, on the gwasm engine."""
from __future__ import annotations

__version__ = "0.1.0"
