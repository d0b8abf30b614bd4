"""Packing external files into a COPY of the scene, in a separate background Blender.

This module must not import bpy: it runs in the add-on's submit thread.

Why a subprocess instead of pack_all() in the artist's own session:
  * bpy.ops.file.pack_all() changes the open file: every image becomes packed, the
    file is marked modified and the change lands on the undo stack. Undoing it again
    (file.unpack_all) is not a clean inverse: its methods either write files to disk
    (WRITE_LOCAL/WRITE_ORIGINAL), repoint images (USE_LOCAL) or need the originals to
    exist, and an error half way leaves the session packed. A crash or an exception
    between "pack" and "unpack" would leave the user's file changed.
  * Packing reads every texture into memory; doing it in the user's Blender costs
    them RAM (and time on the UI thread) for a file they are not going to keep.
  * In a child process it runs off the UI thread, failure cannot hurt the session,
    and the artist's file, undo history and "modified" flag stay exactly as they were.
So the operator writes the current state with save_as_mainfile(copy=True) (which
does not touch the open file; relative paths are remapped to stay valid from the
temp folder), then this module opens that copy in `blender -b -Y --factory-startup`,
packs everything there and saves the copy in place. Cost: one Blender start-up,
about 1.5-2 s for small scenes.
"""

import json
import os
import subprocess
import sys

PACK_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pack_in_blender.py")
# Large scenes with many big textures take a while to read and write; a hung
# child should still not block the add-on forever.
PACK_TIMEOUT_S = 30 * 60


class PackError(Exception):
    pass


def pack_copy(blender_binary, blend_path, timeout=PACK_TIMEOUT_S):
    """Packs blend_path's external files into itself; returns {"packed": [...], "warnings": [...]}."""
    result_path = blend_path + ".pack-result.json"
    args = [
        blender_binary,
        "-b",
        "-Y",  # never run Python embedded in the user's file while packing
        "--factory-startup",  # no user add-ons or startup file: nothing else touches the copy
        blend_path,
        "--python-exit-code", "3",
        "--python", PACK_SCRIPT,
        "--",
        "--result", result_path,
    ]
    try:
        completed = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            # No console window flashing up on Windows.
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0,
        )
    except FileNotFoundError:
        raise PackError(f"Could not run Blender ({blender_binary}) to pack the copy") from None
    except subprocess.TimeoutExpired:
        raise PackError(f"Packing external files took longer than {timeout // 60} minutes; gave up") from None
    output = completed.stdout.decode("utf-8", "replace")
    try:
        with open(result_path, encoding="utf-8") as handle:
            result = json.load(handle)
    except (OSError, ValueError):
        result = None
    finally:
        try:
            os.remove(result_path)
        except OSError:
            pass
    if completed.returncode != 0 or result is None or not result.get("saved"):
        tail = "\n".join(line for line in output.splitlines() if line.strip())[-1500:]
        detail = (result or {}).get("error") or tail or f"exit code {completed.returncode}"
        raise PackError(f"Packing external files into the copy failed: {detail}")
    return result
