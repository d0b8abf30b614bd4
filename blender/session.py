"""A persistent Blender render session, driven one JSON command per stdin line.

Started by src/worker/blender/session.ts in one of two ways:
  cold:       blender -b <file.blend> [-Y | -y] -t <threads> --python blender/session.py \
                  -- [--overrides JSON]
  pre-warmed: blender -b -Y -t <threads> --python blender/session.py -- --prewarmed

Keeping one Blender process open avoids paying start-up and scene loading for
every frame (about 1.5 s each on small scenes). A pre-warmed session goes
further: it is started with no scene while the worker is idle, replies
{"event": "waiting"} and waits for the first command, which must be
  {"cmd": "open", "file": "/abs/scene.blend", "allowScripts": BOOL,
   "overrides": {...}}
(or quit). It loads the file the way `blender -b FILE [-y | -Y]` would and
from then on is a normal session. Commands once the scene is loaded:
  {"cmd": "render", "frame": N, "output": "/abs/dir/frame_####"}
  {"cmd": "render", "frame": N, "output": "/abs/dir/tile_####",
   "tile": {"x": X, "y": Y, "width": W, "height": H,
            "frameWidth": FW, "frameHeight": FH, ...}}
  {"cmd": "quit"}
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
redirected into <output folder>/passes/ (see contain_file_outputs): a .blend
must not write files anywhere else on the worker.
"""

import ctypes
import hashlib
import json
import os
import re
import sys
import traceback

import bpy

EVENT_FD = 3
NONCE_VARIABLE = "ARCHENLAND_EVENT_NONCE"
FENCE_PREFIX = "@@ARCHENLAND-FENCE "
# Script argument for a session started with no scene, waiting for "open".
PREWARMED_FLAG = "--prewarmed"

# Names accepted by `blender -F` mapped to the Python enum names, so an
# override can use either spelling.
CLI_FORMAT_ALIASES = {
    "TGA": "TARGA",
    "RAWTGA": "TARGA_RAW",
    "JP2": "JPEG2000",
    "EXR": "OPEN_EXR",
    "MULTILAYER": "OPEN_EXR_MULTILAYER",
}
# Movie formats append frames to one file: meaningless for frame-at-a-time renders.
MOVIE_FORMATS = {"FFMPEG", "AVI_JPEG", "AVI_RAW", "AVIJPEG", "AVIRAW"}

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


# Opened by main() before anything can reply.
channel = None


def emit(event, **fields):
    channel.emit(event, **fields)


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


def check_overrides(overrides):
    if not isinstance(overrides, dict):
        raise ValueError("overrides must be a JSON object")
    return overrides


def parse_overrides(args):
    if "--overrides" not in args:
        return {}
    position = args.index("--overrides")
    if position + 1 >= len(args):
        raise ValueError("--overrides needs a JSON argument")
    return check_overrides(json.loads(args[position + 1]))


def apply_overrides(scene, overrides):
    """Apply each override that is present and not null; leave the rest alone."""
    render = scene.render

    engine = overrides.get("engine")
    if engine is not None:
        render.engine = engine  # first: the samples override depends on it

    percentage = overrides.get("resolutionPercentage")
    if percentage is not None:
        render.resolution_percentage = int(percentage)

    samples = overrides.get("samples")
    if samples is not None:
        if render.engine == "CYCLES":
            scene.cycles.samples = int(samples)
        elif render.engine == "BLENDER_EEVEE":
            scene.eevee.taa_render_samples = int(samples)
        # Workbench has no sample count; nothing to override.

    file_format = overrides.get("fileFormat")
    if file_format is not None:
        name = CLI_FORMAT_ALIASES.get(file_format.upper(), file_format.upper())
        if name in MOVIE_FORMATS:
            raise ValueError(f"file format {file_format} is a movie format; "
                             "frames must be rendered to image files")
        render.image_settings.file_format = name


def render_to_file(scene, frame, output):
    scene.frame_set(frame)
    # Expand "#" (and the extension) the way `blender -o PATTERN -f N` does.
    # A still render with write_still=True does NOT expand "#": given the
    # pattern itself it writes a file literally named "frame_####.png".
    scene.render.filepath = output
    # The worker accepts only "<pattern with # expanded><image extension>".
    scene.render.use_file_extension = True
    path = scene.render.frame_path(frame=frame)
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    if not os.path.isfile(path):
        # Guards the "saved" event against a path computed differently from
        # the one Blender wrote to (e.g. a future change in frame_path).
        raise RuntimeError(f"render finished but no file was written at {path}")
    return path


def render_frame(scene, frame, output, tile=None):
    """Render a whole frame, or only `tile` of it; return the saved file's path."""
    render = scene.render
    contain_file_outputs(scene, os.path.dirname(output))
    previous = read_border(render)
    try:
        if tile is not None:
            check_frame_size(render, tile)
            set_border(render, tile)
        path = render_to_file(scene, frame, output)
    finally:
        # Also after a failure: the next command may be a whole frame.
        write_border(render, previous)
    if tile is not None:
        check_image_size(path, tile)
    return path


# --- File Output nodes: written only inside the frame's output folder ---

PASSES_FOLDER = "passes"
# Characters kept in a folder named after a node or node group; others become "_".
UNSAFE_FOLDER_CHARS = re.compile(r"[^A-Za-z0-9 ._-]")
MAX_FOLDER_NAME = 48


def folder_name(name):
    """A single, harmless path component for a Blender name, the same every time.

    Names that had to change get a short hash of the original, so two names
    that differ only in unsafe characters keep separate folders.
    """
    safe = UNSAFE_FOLDER_CHARS.sub("_", name)[:MAX_FOLDER_NAME].lstrip(". ")
    if safe == name:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return f"{safe}-{digest}" if safe else digest


def relative_parts(path):
    """The path's components without root, "." or "..": it cannot climb out."""
    return [part for part in re.split(r"[/\\]", path) if part not in ("", ".", "..")]


def file_name_prefix(path):
    """What follows the last separator ("" for a folder), never "." or ".."."""
    last = re.split(r"[/\\]", path)[-1]
    return "" if last in (".", "..") else last


def compositor_trees(scene):
    """The scene's compositor and the node groups it uses, with the folder of each."""
    if scene.node_tree is None:
        return []
    found = [(scene.node_tree, "compositor")]
    seen = {scene.node_tree}
    for tree, _ in found:  # grows while walking: groups inside groups
        for node in tree.nodes:
            group = node.node_tree if node.type == "GROUP" else None
            if group is not None and group not in seen:
                seen.add(group)
                found.append((group, "group-" + folder_name(group.name)))
    return found


def contain_file_outputs(scene, output_dir):
    """Point every File Output node at <output_dir>/passes/<tree>/<node>/.

    The scene chose base_path (absolute, "//" beside the .blend - the worker's
    blend cache, shared by jobs - or "..") and each slot's sub-path; Blender
    writes them on every render even with scripts off. The layout is fixed so
    the passes can be collected later; running it again changes nothing.
    """
    passes = os.path.join(output_dir, PASSES_FOLDER)
    for tree, tree_folder in compositor_trees(scene):
        for node in tree.nodes:
            if node.type != "OUTPUT_FILE":
                continue
            if tree.library is not None:
                raise RuntimeError(f"File Output node {node.name!r} is in node group "
                                   f"{tree.name!r}, linked from {tree.library.filepath!r}: "
                                   "it cannot be redirected into the job's folder")
            node_dir = os.path.join(passes, tree_folder, folder_name(node.name))
            if node.format.file_format == "OPEN_EXR_MULTILAYER":
                # One file per frame: base_path is a folder plus the file names' prefix.
                node.base_path = os.path.join(node_dir, file_name_prefix(node.base_path))
            else:
                node.base_path = node_dir + os.sep
            for slot in node.file_slots:
                slot.path = "/".join(relative_parts(slot.path))


# --- Tiles: one rectangle of the frame, rendered as a cropped border render ---

TILE_INT_FIELDS = ("x", "y", "width", "height", "frameWidth", "frameHeight")
BORDER_SETTINGS = ("use_border", "use_crop_to_border",
                   "border_min_x", "border_max_x", "border_min_y", "border_max_y")


def parse_tile(tile):
    """The tile's pixel fields, checked; raises ValueError with the reason."""
    if not isinstance(tile, dict):
        raise ValueError(f"tile must be a JSON object, got {tile!r}")
    fields = {}
    for key in TILE_INT_FIELDS:
        value = tile.get(key)
        # JSON true/false arrive as bool, which Python counts as int.
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"tile.{key} must be an integer, got {value!r}")
        fields[key] = value
    x, y, width, height = fields["x"], fields["y"], fields["width"], fields["height"]
    frame_width, frame_height = fields["frameWidth"], fields["frameHeight"]
    if width < 1 or height < 1:
        raise ValueError(f"tile size must be at least 1x1, got {width}x{height}")
    if x < 0 or y < 0:
        raise ValueError(f"tile position must not be negative, got ({x}, {y})")
    if x + width > frame_width or y + height > frame_height:
        raise ValueError(f"tile {width}x{height} at ({x}, {y}) does not fit in "
                         f"the {frame_width}x{frame_height} frame")
    return fields


def effective_frame_size(render):
    # Blender scales by the percentage with integer division, as here.
    percentage = render.resolution_percentage
    return (render.resolution_x * percentage // 100,
            render.resolution_y * percentage // 100)


def check_frame_size(render, tile):
    # The server cut the frame for a size it read earlier (probe + overrides);
    # tiles of a frame of another size would not stitch together.
    width, height = effective_frame_size(render)
    if (width, height) != (tile["frameWidth"], tile["frameHeight"]):
        raise ValueError(
            f"tile is for a {tile['frameWidth']}x{tile['frameHeight']} frame but the "
            f"scene renders {width}x{height} (resolution {render.resolution_x}x"
            f"{render.resolution_y} at {render.resolution_percentage}%)")


def border_fraction(pixel, size):
    # Blender turns a border edge into a pixel as int(fraction * size),
    # truncating. Aiming a quarter pixel past the edge keeps float rounding
    # from truncating onto the pixel before it.
    return min(max((pixel + 0.25) / size, 0.0), 1.0)


def set_border(render, tile):
    frame_width, frame_height = tile["frameWidth"], tile["frameHeight"]
    left, right = tile["x"], tile["x"] + tile["width"]
    # The tile's y runs down from the top; Blender's border runs up from the bottom.
    bottom = frame_height - (tile["y"] + tile["height"])
    top = frame_height - tile["y"]
    render.use_border = True
    render.use_crop_to_border = True  # save just the tile, not a black frame around it
    render.border_min_x = border_fraction(left, frame_width)
    render.border_max_x = border_fraction(right, frame_width)
    render.border_min_y = border_fraction(bottom, frame_height)
    render.border_max_y = border_fraction(top, frame_height)


def read_border(render):
    return {name: getattr(render, name) for name in BORDER_SETTINGS}


def write_border(render, settings):
    for name, value in settings.items():
        setattr(render, name, value)


def check_image_size(path, tile):
    # Read the size back from the file itself: the stitcher trusts it, and a
    # border Blender rounded differently would leave a seam or an overlap.
    image = bpy.data.images.load(path, check_existing=False)
    try:
        width, height = image.size
    finally:
        bpy.data.images.remove(image)
    if (width, height) != (tile["width"], tile["height"]):
        raise RuntimeError(f"tile render saved a {width}x{height} image at {path}, "
                           f"expected {tile['width']}x{tile['height']}")


def handle(scene, line):
    """Run one command; return False when the session should end."""
    try:
        command = json.loads(line)
    except ValueError as error:
        emit("error", frame=None, message=f"invalid command JSON: {error}")
        return True
    if not isinstance(command, dict):
        emit("error", frame=None, message="a command must be a JSON object")
        return True

    name = command.get("cmd")
    if name == "quit":
        return False
    if name != "render":
        emit("error", frame=None, message=f"unknown command {name!r}")
        return True

    frame = command.get("frame")
    output = command.get("output")
    if not isinstance(frame, int) or not isinstance(output, str) or not output:
        emit("error", frame=frame if isinstance(frame, int) else None,
             message="render needs an integer frame and an output path")
        return True
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
    command = json.loads(line)
    if not isinstance(command, dict):
        raise ValueError("a command must be a JSON object")
    if command.get("cmd") == "quit":
        return None
    if command.get("cmd") != "open":
        raise ValueError(f"expected open or quit, got {command.get('cmd')!r}")
    if not isinstance(command.get("file"), str) or not command["file"]:
        raise ValueError("open needs a file path")
    if not isinstance(command.get("allowScripts"), bool):
        raise ValueError("open needs allowScripts true or false")
    check_overrides(command.get("overrides", {}))
    return command


def open_scene(lines):
    """Pre-warmed start: wait for the scene to render, load it, return its overrides.

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
    return command.get("overrides", {})


def serve(lines, overrides):
    # Read the scene only now: in a pre-warmed session, loading the file freed the
    # start-up scene, and any reference taken earlier would be invalid.
    scene = bpy.context.scene
    try:
        apply_overrides(scene, overrides)
    except Exception as error:
        fatal(f"could not apply overrides: {error_message(error)}")

    emit("ready", blenderVersion=bpy.app.version_string, sceneName=scene.name)
    for line in lines:
        if not handle(scene, line):
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
        overrides = open_scene(lines)
        if overrides is None:
            return
    else:
        try:
            overrides = parse_overrides(args)
        except ValueError as error:
            fatal(f"could not apply overrides: {error_message(error)}")
    serve(lines, overrides)


main()
