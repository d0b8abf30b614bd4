"""The event channel: replies to the worker on file descriptor 3.

Blender's stdout carries text the scene controls (object, scene and view layer
names can contain newlines), so the worker trusts nothing read there. Replies
go on a pipe of their own, each carrying the session's nonce (environment
variable ARCHENLAND_EVENT_NONCE, removed once read) and a sequence number:
  {"nonce": "<hex>", "seq": N, "event": "saved", ...}
Right before reply N the session prints the fence line
  @@ARCHENLAND-FENCE <nonce> N
on stdout and on stderr, after flushing both: the worker hands out reply N only
once it has also read both fences, so a frame's log is complete when its
"saved" reply arrives. The worker's side is src/worker/blender/progress.ts.
"""

import ctypes
import json
import os
import re
import sys

EVENT_FD = 3
NONCE_VARIABLE = "ARCHENLAND_EVENT_NONCE"
FENCE_PREFIX = "@@ARCHENLAND-FENCE "

try:
    # Blender's C code prints progress with printf; its buffer is separate from
    # Python's. Flushing both before each fence puts the fence after everything
    # printed before it, so a frame's log is complete when its "saved" reply
    # is handed out.
    _libc = ctypes.CDLL(None)
except OSError:
    _libc = None


def flush_all():
    sys.stdout.flush()
    sys.stderr.flush()
    if _libc is not None:
        _libc.fflush(None)


class EventChannel:
    """Replies to the worker on their own pipe, each fenced on stdout and stderr."""

    def __init__(self, stream, nonce):
        self.stream = stream
        self.nonce = nonce
        self.sequence = 0

    @classmethod
    def open(cls):
        # Removed from the environment so neither the scene nor anything Blender
        # starts can read it.
        nonce = os.environ.pop(NONCE_VARIABLE, "")
        if not re.fullmatch(r"[0-9a-f]{32}", nonce):
            raise RuntimeError(f"{NONCE_VARIABLE} must hold the session's nonce "
                               "(32 hex digits)")
        try:
            stream = os.fdopen(EVENT_FD, "w", buffering=1, encoding="utf-8")
        except OSError as error:
            raise RuntimeError(f"no event pipe on file descriptor {EVENT_FD}: {error}")
        return cls(stream, nonce)

    def emit(self, event, **fields):
        self.sequence += 1
        fence = f"{FENCE_PREFIX}{self.nonce} {self.sequence}\n"
        # Everything Blender printed before this reply goes out before its fence.
        flush_all()
        sys.stdout.write(fence)
        sys.stderr.write(fence)
        flush_all()
        # json.dumps escapes newlines, so a scene name cannot split a reply.
        reply = {"nonce": self.nonce, "seq": self.sequence, "event": event, **fields}
        self.stream.write(json.dumps(reply) + "\n")
        self.stream.flush()
