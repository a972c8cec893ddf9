"""gwasm: run any WASI program as sandboxed, parallel, reproducible subtasks.

Usable without the rest of gflite: ``gwasm run task.json``.
"""
from __future__ import annotations
