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
Replies are single lines starting with "@@ARCHENLAND " followed by JSON, mixed
into Blender's own stdout (progress lines such as "Fra:1 ... | Sample 2/4"
stay there on purpose: the worker parses them for progress). Once the scene is
loaded and the overrides applied the session replies {"event": "ready"}; if it
cannot start it replies {"event": "fatal"} and exits 1.
"""

import ctypes
import json
import os
import sys
import traceback

import bpy

PREFIX = "@@ARCHENLAND "
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
    # Python's. Flushing both before each event keeps the order on the pipe
    # true, so a frame's log is complete when its "saved" event arrives.
    _libc = ctypes.CDLL(None)
except OSError:
    _libc = None


def flush_all():
    sys.stdout.flush()
    if _libc is not None:
        _libc.fflush(None)


def emit(event, **fields):
    flush_all()
    sys.stdout.write(PREFIX + json.dumps({"event": event, **fields}) + "\n")
    flush_all()


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
