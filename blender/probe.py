"""Print a scene's render settings as one machine-readable line, then exit.

Run: blender -b file.blend [-Y | -y] --python blender/probe.py [-- --project JSON]
with a pipe on file descriptor 3 and the worker's nonce in ARCHENLAND_EVENT_NONCE.
--project {"root": "<submitting machine's project folder>", "tree": "/abs/folder"}
(or null) says where the project's files are laid out on this worker: absolute
paths under root are remapped into tree first (farm_session/project_paths.py),
before anything is read, exactly as session.py does before rendering.
Output, on descriptor 3 only: {"nonce": "<hex>", "event": "probe", ...}
(parsed by src/worker/blender/probe.ts). Not on stdout: Blender prints text the
.blend controls there (names can contain newlines), so a scene could forge it.

"savedWith" is "major.minor" of the Blender that saved the file ("fileVersion" its
[major, minor, file sub-version]). "problems" is the preflight (farm_session/
preflight.py): [{"code", "severity": "error"|"warning", "message", "path"?, "fix"?}],
errors first, at most 50: NO_CAMERA, DENOISER_UNAVAILABLE (fix "disable_denoising"),
ENGINE_UNAVAILABLE, MISSING_FILE (path as written in the .blend),
SCRIPTS_NEEDED. (NEWER_BLENDER is the server's: it knows which Blender renders the job.)

The scene's description itself is farm_session/scene_info.py's, shared with
session.py (which probes in the Blender that then renders the job).
"""

import json
import os
import sys

# Blender runs this file with --python, which does not put its folder on
# sys.path; the farm_session package beside it holds the event channel's
# constants, shared with session.py.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpy  # noqa: E402

from farm_session.events import EVENT_FD, NONCE_VARIABLE  # noqa: E402
from farm_session.project_paths import check_project, remap_project  # noqa: E402
from farm_session.scene_info import describe, scripts_allowed_by  # noqa: E402

def report(info):
    nonce = os.environ.pop(NONCE_VARIABLE, "")
    try:
        channel = os.fdopen(EVENT_FD, "w", encoding="utf-8")
    except OSError as error:
        print(f"Error: probe.py has no pipe on file descriptor {EVENT_FD} to report on: {error}",
              file=sys.stderr, flush=True)
        sys.exit(1)
    with channel:
        channel.write(json.dumps({"nonce": nonce, **info}) + "\n")


def script_args(argv):
    return argv[argv.index("--") + 1:] if "--" in argv else []


def parse_project(args):
    if "--project" not in args:
        return None
    position = args.index("--project")
    if position + 1 >= len(args):
        raise ValueError("--project needs a JSON argument")
    return check_project(json.loads(args[position + 1]))


def main():
    try:
        project = parse_project(script_args(sys.argv))
    except ValueError as error:  # json.JSONDecodeError is a ValueError too
        print(f"Error: probe.py: invalid --project: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    if project is not None:
        remap_project(project["root"], project["tree"])
    report({"event": "probe", **describe(bpy.context.scene, scripts_allowed_by(sys.argv))})


main()
