"""``h2load`` (nghttp2's C load generator, Debian's ``nghttp2-client``) as a gRPC load generator.

gRPC over HTTP/2 is a POST of a length-prefixed message to ``/package.Service/Method`` with
``content-type: application/grpc`` and ``te: trailers``; h2load sends the same request body on every
call, so all calls ask for the same user (a warmer cache than varied users). It counts HTTP statuses
only, and a gRPC error is an HTTP 200 with a non-zero ``grpc-status`` trailer, so the caller checks one
call with a real gRPC client first. Latency percentiles come from h2load's per-request log.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

#: Seconds of load before the measured window, so connections and the server's caches are warm.
WARM_UP_S = 1.0


def available() -> bool:
    return shutil.which("h2load") is not None


def grpc_frame(message: bytes) -> bytes:
    """One uncompressed gRPC message: flag byte 0, 4-byte big-endian length, the message."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def run(port: int, path: str, message: bytes, seconds: float, streams: int, connections: int = 1) -> dict:
    """``streams`` calls in flight on each of ``connections`` for ``seconds`` (after :data:`WARM_UP_S`):
    p50/p99 ms, QPS and the count of non-200 answers."""
    with tempfile.TemporaryDirectory(prefix="h2load-") as tmp:
        body, log = Path(tmp) / "request.bin", Path(tmp) / "requests.log"
        body.write_bytes(grpc_frame(message))
        command = ["h2load", "-c", str(connections), "-m", str(streams), "-D", f"{seconds:g}",
                   "--warm-up-time", f"{WARM_UP_S:g}", "-d", str(body), "--log-file", str(log),
                   "-H", "content-type: application/grpc", "-H", "te: trailers", f"http://127.0.0.1:{port}{path}"]
        out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + WARM_UP_S + 60)
        if out.returncode != 0:
            raise RuntimeError(f"h2load failed ({out.returncode}): {out.stderr.strip() or out.stdout[-500:]}")
        rows = [line.split("\t") for line in log.read_text().splitlines() if line.strip()]
    if not rows:
        raise RuntimeError(f"h2load logged no requests: {out.stdout[-500:]}")
    start_us = np.asarray([int(r[0]) for r in rows], dtype=np.int64)
    # Only the last `seconds` of starts count, whether or not the log holds the warm-up's calls.
    window = start_us >= start_us.max() - int(seconds * 1e6)
    status = np.asarray([int(r[1]) for r in rows])[window]
    ms = np.asarray([int(r[2]) for r in rows], dtype=np.float64)[window] / 1000
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "qps": ms.size / seconds,
            "errors": int(np.count_nonzero(status != 200))}
