"""A persistent Blender render session, driven one JSON command per stdin line.

Started by src/worker/blender/session.ts in one of two ways:
  cold:       blender -b <file.blend> [-Y | -y] -t <threads> --python blender/session.py \
                  -- [--overrides JSON] [--project JSON]
  pre-warmed: blender -b -Y -t <threads> --python blender/session.py -- --prewarmed

Keeping one Blender process open avoids paying start-up and scene loading for
every frame (about 1.5 s each on small scenes). A pre-warmed session goes
further: it is started with no scene while the worker is idle, replies
{"event": "waiting"} and waits for the first command, which must be
  {"cmd": "open", "file": "/abs/scene.blend", "allowScripts": BOOL,
   "overrides": {...}, "project": {"root": "...", "tree": "/abs/..."} | null}
(or quit). It loads the file the way `blender -b FILE [-y | -Y]` would and
from then on is a normal session.
"overrides" (cold start: --overrides) is farm_session/overrides.py's object:
engine, resolutionPercentage, samples, fileFormat, denoising (false: Cycles
denoising off); null or absent keys keep the scene's own.
"device" (cold start: --device with the same JSON; absent: the CPU) is the worker's
render device, {"type": "CPU" | "CUDA" | "OPTIX" | "HIP" | "ONEAPI" | "METAL",
"gpus": [indices]}, set in Cycles' preferences after loading (farm_session/devices.py);
"ready" reports what is used, read back from Blender.
"project" (cold start: --project with the same JSON; absent or null for a lone
.blend) says where the project's files are laid out on this worker: `tree` holds
each file at its path relative to `root`, the submitting machine's project folder.
Right after loading, before the overrides, absolute paths under root are
rewritten into tree and libraries reloaded (farm_session/project_paths.py).
Commands once the scene is loaded:
  {"cmd": "render", "frame": N, "output": "/abs/dir/frame_####"}
  {"cmd": "render", "frame": N, "output": "/abs/dir/tile_####",
   "tile": {"x": X, "y": Y, "width": W, "height": H,
            "frameWidth": FW, "frameHeight": FH, ...}}
  {"cmd": "probe"}        replies {"event": "probe", ...}: the scene's settings and
                          the preflight, as probe.py reports them (farm_session/scene_info.py)
  {"cmd": "configure", "overrides": {...}}   applies a job's overrides to a session
                          opened to probe it, then replies "ready" again
  {"cmd": "quit"}
Every command is checked against farm_session/session_protocol.json, generated from
the worker's own schemas (src/protocol/blender-session.ts), and so is every reply.
With "tile" (a TileRegion from src/protocol/tiles.ts: pixels, origin at the
TOP-LEFT, extra keys such as index/cols/rows ignored) only that rectangle is
rendered (border render, cropped) and the saved image is exactly W x H. The
scene's own border settings are restored afterwards, so a following
whole-frame render is unaffected.
Replies are JSON lines on file descriptor 3, a pipe of their own: Blender's
stdout carries text the scene controls (object, scene and view layer names can
contain newlines), so nothing read there is trusted. Every reply carries the
session's nonce (environment variable ARCHENLAND_EVENT_NONCE, removed once read)
and a sequence number:
  {"nonce": "<hex>", "seq": N, "event": "saved", ...}
Right before reply N the session prints the fence line
  @@ARCHENLAND-FENCE <nonce> N
on stdout and on stderr, after flushing both: the worker hands out reply N only
once it has also read both fences, so a frame's log (progress lines such as
"Fra:1 ... | Sample 2/4", which stay on stdout for the worker to parse) is
complete when its "saved" reply arrives. Once the scene is loaded and the
overrides applied the session replies {"event": "ready"}; if it cannot start it
replies {"event": "fatal"} and exits 1.

Before every render, compositor File Output nodes (also inside node groups) are
redirected into <output folder>/passes/ (see farm_session/file_outputs.py): a
.blend must not write files anywhere else on the worker.

This file parses the arguments and runs the command loop; the rest lives in the
farm_session package beside it: events (the fd-3 channel), overrides, tiles,
file_outputs and render.
"""

import json
import os
import sys
import traceback

# Blender runs this file with --python, which does not put its folder on
# sys.path; farm_session, the package this script is split into, lives beside it.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpy  # noqa: E402

from farm_session.devices import apply_device  # noqa: E402
from farm_session.events import EventChannel, flush_all  # noqa: E402
from farm_session.overrides import apply_overrides  # noqa: E402
from farm_session.project_paths import check_project, remap_project  # noqa: E402
from farm_session.protocol import (  # noqa: E402
    ProtocolError, check_command, check_device, check_event, check_overrides, check_project_layout,
)
from farm_session.render import render_frame  # noqa: E402
from farm_session.scene_info import describe, scripts_allowed_by  # noqa: E402
from farm_session.tiles import parse_tile  # noqa: E402

# Script argument for a session started with no scene, waiting for "open".
PREWARMED_FLAG = "--prewarmed"

# Opened by main() before anything can reply.
channel = None


def emit(event, **fields):
    channel.emit(**check_event({"event": event, **fields}))


def error_message(error):
    # bpy operator errors arrive as "Error: <report>\n"; keep Blender's text.
    text = str(error).strip()
    return text or type(error).__name__


def fatal(message):
    """The session cannot start: tell the worker why, then exit."""
    traceback.print_exc()
    emit("fatal", message=message)
    sys.exit(1)


def script_args(argv):
    return argv[argv.index("--") + 1:] if "--" in argv else []


def json_arg(args, flag):
    """The JSON value following `flag`, or None when the flag is absent."""
    if flag not in args:
        return None
    position = args.index(flag)
    if position + 1 >= len(args):
        raise ValueError(f"{flag} needs a JSON argument")
    return json.loads(args[position + 1])


def parse_overrides(args):
    overrides = json_arg(args, "--overrides")
    return {} if overrides is None else check_overrides(overrides)


def parse_project(args):
    return check_project(check_project_layout(json_arg(args, "--project")))


def handle(scene, allow_scripts, line):
    """Run one command; return False when the session should end."""
    try:
        command = json.loads(line)
    except ValueError as error:
        emit("error", frame=None, message=f"invalid command JSON: {error}")
        return True
    try:
        check_command(command)
    except ProtocolError as error:
        frame = command.get("frame") if isinstance(command, dict) else None
        emit("error", frame=frame if type(frame) is int else None, message=f"invalid command: {error}")
        return True
    if command["cmd"] == "quit":
        return False
    if command["cmd"] == "probe":
        emit("probe", **describe(scene, allow_scripts))
        return True
    if command["cmd"] == "configure":
        try:
            apply_overrides(scene, command["overrides"])
        except Exception as error:
            emit("error", frame=None, message=f"could not apply overrides: {error_message(error)}")
            return True
        emit("ready", blenderVersion=bpy.app.version_string, sceneName=scene.name)
        return True
    if command["cmd"] != "render":
        emit("error", frame=None, message=f"the scene is already open: {command['cmd']} is not a command now")
        return True

    frame = command["frame"]
    output = command["output"]
    tile = None
    if command.get("tile") is not None:
        try:
            tile = parse_tile(command["tile"])
        except ValueError as error:
            emit("error", frame=frame, message=f"invalid tile: {error}")
            return True
    try:
        path = render_frame(scene, frame, output, tile)
    except Exception as error:  # report and keep serving the next command
        emit("error", frame=frame, message=error_message(error))
        return True
    emit("saved", frame=frame, path=path)
    return True


def command_lines():
    """Non-empty stdin lines; they end at EOF (the worker went away)."""
    for line in sys.stdin:
        line = line.strip()
        if line:
            yield line


def parse_open(line):
    """The open command of a pre-warmed session, checked; None for quit."""
    command = check_command(json.loads(line))
    if command["cmd"] == "quit":
        return None
    if command["cmd"] != "open":
        raise ValueError(f"expected open or quit, got {command['cmd']!r}")
    check_project(command["project"])
    return command


def open_scene(lines):
    """Pre-warmed start: wait for the scene to render, load it; return (overrides, project, allowScripts).

    Returns None when told to quit (or stdin closed) before any scene was named.
    """
    emit("waiting", blenderVersion=bpy.app.version_string)
    line = next(lines, None)
    if line is None:
        return None
    try:
        command = parse_open(line)
    except ValueError as error:  # json.JSONDecodeError is a ValueError too
        fatal(f"invalid open command: {error}")
    if command is None:
        return None
    try:
        # use_scripts does what -y / -Y do on the command line: whether this file's
        # embedded Python (registered texts, Python drivers) may run. load_ui=False:
        # the file's screen layout is of no use headless; its scene is still the one
        # `blender -b FILE` would render.
        bpy.ops.wm.open_mainfile(filepath=command["file"], load_ui=False,
                                 use_scripts=command["allowScripts"])
    except Exception as error:  # RuntimeError carrying Blender's "Error: ..." report
        fatal(f"could not load the scene: {error_message(error)}")
    return command["overrides"], command["project"], command["allowScripts"], command.get("device")


def serve(lines, overrides, project, allow_scripts, device):
    if project is not None:
        try:
            remap_project(project["root"], project["tree"])
        except Exception as error:
            fatal(f"could not lay the project out: {error_message(error)}")
    # Read the scene only now: in a pre-warmed session, loading the file freed the
    # start-up scene, and any reference taken earlier would be invalid.
    scene = bpy.context.scene
    try:
        # Cycles keeps the device in the preferences, which loading a file keeps: set every time.
        used = apply_device(scene, device or {"type": "CPU"})
    except ValueError as error:
        fatal(f"render device: {error}")
    try:
        apply_overrides(scene, overrides)
    except Exception as error:
        fatal(f"could not apply overrides: {error_message(error)}")

    emit("ready", blenderVersion=bpy.app.version_string, sceneName=scene.name, device=used)
    for line in lines:
        if not handle(scene, allow_scripts, line):
            break
    flush_all()


def main():
    global channel
    try:
        channel = EventChannel.open()
    except RuntimeError as error:
        # Nobody to reply to: say it where a person running this by hand looks.
        print(f"Error: session.py cannot reply to the worker: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    args = script_args(sys.argv)
    lines = command_lines()
    if PREWARMED_FLAG in args:
        opened = open_scene(lines)
        if opened is None:
            return
        overrides, project, allow_scripts, device = opened
    else:
        allow_scripts = scripts_allowed_by(sys.argv)
        try:
            device = json_arg(args, "--device")
            check_device(device)
        except ValueError as error:
            fatal(f"invalid --device: {error_message(error)}")
        try:
            overrides = parse_overrides(args)
        except ValueError as error:
            fatal(f"could not apply overrides: {error_message(error)}")
        try:
            project = parse_project(args)
        except ValueError as error:
            fatal(f"invalid --project: {error_message(error)}")
    serve(lines, overrides, project, allow_scripts, device)


main()
