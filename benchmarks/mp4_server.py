"""A loopback HTTP server that streams one large, valid MP4 generated on the fly.

The body is a short real MP4 (rendered once at start) followed by a single ISO-BMFF ``free``
box that pads the file to the asked size, so PyAV still probes it and nothing is stored on
disk. Run as ``python benchmarks/mp4_server.py <bytes>``: it prints ``{"url": ...}`` and
serves until its stdin closes.
"""

from __future__ import annotations

import json
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from abebeats_lab.media.render import render_video

__all__ = ["padded_mp4_header"]

LOOPBACK = "127.0.0.1"
CHUNK = 1024 * 1024
BOX_HEADER = 8
MAX_BOX = 2**32 - 1  # a 32-bit box size; larger pads would need a 64-bit ``largesize``


def padded_mp4_header(total: int) -> bytes:
    """The real MP4 plus the ``free`` box header; zeros up to ``total`` bytes follow."""
    video = render_video(prompt="download benchmark", seed=1, duration_s=1.0, width=320, height=180)
    pad = total - len(video)
    if not BOX_HEADER <= pad <= MAX_BOX:
        raise ValueError(f"cannot pad a {len(video)} byte MP4 to {total} bytes with one box")
    return video + struct.pack(">I4s", pad, b"free")


def serve(total: int) -> None:
    """Serve ``GET /big.mp4`` on an OS-chosen loopback port until stdin closes."""
    head = padded_mp4_header(total)
    zeros = memoryview(bytes(CHUNK))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(total))
            self.end_headers()
            self.wfile.write(head)
            remaining = total - len(head)
            while remaining > 0:
                step = min(CHUNK, remaining)
                self.wfile.write(zeros[:step])
                remaining -= step

        def log_message(self, *args: object) -> None:
            """Quiet: one line per request would drown the benchmark output."""

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(json.dumps({"url": f"http://{LOOPBACK}:{server.server_port}/big.mp4"}), flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
