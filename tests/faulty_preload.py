"""Test-only Dask worker preload: a provider that returns wrong outputs.

    GFLITE_TEST_FAULT=tag dask worker ADDRESS --preload gflite.gwasm.executors.dask \\
        --preload tests/faulty_preload.py

Every successful result of this worker gets ``[tag]`` appended to each output.
With ``keep-digest:tag`` it also keeps claiming the honest digest, as a liar
would. It works by replacing the attempt task function in this worker
process only (tasks name their function by module and name), so production
code has no switch for it.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Any


def dask_setup(worker: Any) -> None:
    from gflite.gwasm.executors import dask as cluster

    spec = os.environ.get("GFLITE_TEST_FAULT", "faulty")
    keep_digest = spec.startswith("keep-digest:")
    tag = spec.removeprefix("keep-digest:").encode()
    honest = cluster._attempt

    def lying(*args: Any, **kwargs: Any) -> Any:
        result = honest(*args, **kwargs)
        if not result.ok:
            return result
        outputs = tuple((rel, data + b"[" + tag + b"]") for rel, data in result.outputs)
        return replace(result, outputs=outputs, digest=result.digest if keep_digest else "")

    cluster._attempt = lying
