"""Preflight: what would make a scene render wrong, or not at all, on this worker.

Run by blender/probe.py once the scene is loaded and its project remapped. Each
problem is {"code", "severity": "error"|"warning", "message", "path"?, "fix"?}:
  NO_CAMERA             error    no camera (and no sequencer strips or camera markers)
  DENOISER_UNAVAILABLE  error    Cycles denoising with a denoiser this build lacks;
                                 "fix": "disable_denoising" (the "denoising": false override)
  ENGINE_UNAVAILABLE    error    the .blend names a render engine not registered here
                                 (Blender 3.4 prints "Engine 'X' not available ..." on
                                 load and silently renders with EEVEE instead)
  MISSING_FILE          warning  one per external file missing; "path" as written in the .blend
  SCRIPTS_NEEDED        warning  scripts are off and the file has Python drivers or
                                 registered text blocks
Errors come first; at most MAX_PROBLEMS, messages at most MAX_MESSAGE_CHARS and
paths MAX_PATH_CHARS. Names from the .blend are cut short and stripped of control
characters: they are the file's text, not ours.
"""

import ctypes
import re

import bpy

from .dependencies import missing_files

MAX_PROBLEMS = 50
MAX_MESSAGE_CHARS = 300
MAX_PATH_CHARS = 1000
MAX_NAME_CHARS = 40
MAX_NAMES = 3
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# RenderData.engine is a char[32] inside the Scene struct.
ENGINE_FIELD_BYTES = 32
# Bytes of a scene's RenderData searched for it: in Blender 3.4 the field lies 2460
# bytes in, well inside the Scene struct. A Blender that moved it further is not
# searched (no ENGINE_UNAVAILABLE then) rather than read past the struct.
RENDER_DATA_SCAN_BYTES = 3072


def clean(text, limit=MAX_NAME_CHARS):
    """Text from the .blend, safe to show: one line, at most `limit` characters."""
    text = CONTROL_CHARS.sub("?", str(text))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def names(items):
    shown = ", ".join(f'"{clean(item)}"' for item in items[:MAX_NAMES])
    more = len(items) - MAX_NAMES
    return f"{shown} and {more} more" if more > 0 else shown


def problem(code, severity, message, **extra):
    entry = {"code": code, "severity": severity, "message": clean(message, MAX_MESSAGE_CHARS)}
    if extra.get("path") is not None:
        entry["path"] = clean(extra["path"], MAX_PATH_CHARS)
    if extra.get("fix") is not None:
        entry["fix"] = extra["fix"]
    return entry


# --- render engine ---------------------------------------------------------

def engine_is_registered(scene, name):
    """Whether Blender accepts `name` as a render engine (tried on `scene`, then restored)."""
    previous = scene.render.engine
    try:
        scene.render.engine = name
    except TypeError:
        return False
    scene.render.engine = previous
    return True


def engine_offset(scene):
    """Where RenderData.engine lies in a scene's render settings, found by setting it.

    Python sees an unregistered engine as the fallback (EEVEE), so the name the
    .blend holds is read from memory; its offset is found on a scratch scene by
    setting two known engines and looking for both names at the same place.
    """
    base = scene.render.as_pointer()
    raw = (ctypes.c_char * RENDER_DATA_SCAN_BYTES).from_address(base)
    offsets = None
    for name in ("CYCLES", "BLENDER_WORKBENCH"):
        scene.render.engine = name
        data = bytes(raw)
        needle = name.encode() + b"\0"
        found = {match.start() for match in re.finditer(re.escape(needle), data)}
        offsets = found if offsets is None else offsets & found
    return min(offsets) if offsets else None


def raw_engine_name(scene):
    """The engine name stored in the scene, even when no such engine is registered; None if unknown."""
    scratch = bpy.data.scenes.new("archenland-preflight")
    try:
        offset = engine_offset(scratch)
    except (ValueError, TypeError, OSError):
        offset = None
    finally:
        bpy.data.scenes.remove(scratch)
    if offset is None:
        return None
    raw = ctypes.string_at(scene.render.as_pointer() + offset, ENGINE_FIELD_BYTES)
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def engine_problems(scene):
    name = raw_engine_name(scene)
    if not name or engine_is_registered(scene, name):
        return []
    return [problem("ENGINE_UNAVAILABLE", "error",
                    f'The scene uses the render engine "{clean(name)}", which this Blender '
                    f"{bpy.app.version_string} does not have (an add-on engine not installed); "
                    f"Blender would render it with {scene.render.engine} instead.")]


# --- camera, denoiser ------------------------------------------------------

def renders_from_sequencer(scene):
    editor = scene.sequence_editor
    return scene.render.use_sequencer and editor is not None and len(editor.sequences_all) > 0


def camera_problems(scene):
    if scene.camera is not None or renders_from_sequencer(scene):
        return []
    if any(marker.camera is not None for marker in scene.timeline_markers):
        return []  # markers switch the camera in as frames are rendered
    return [problem("NO_CAMERA", "error",
                    f'Scene "{clean(scene.name)}" has no camera: Blender cannot render it. '
                    "Set a scene camera and submit again.")]


def optix_available():
    try:
        import _cycles
        if not _cycles.get_device_types()[1]:
            return False
        preferences = bpy.context.preferences.addons["cycles"].preferences
        return len(preferences.get_devices_for_type("OPTIX")) > 0
    except Exception:  # no Cycles add-on, or no GPU API: treat as absent
        return False


def denoiser_available(denoiser):
    if denoiser == "OPENIMAGEDENOISE":
        import _cycles
        return bool(getattr(_cycles, "with_openimagedenoise", False))
    if denoiser == "OPTIX":
        return optix_available()
    return False


def denoising_on(scene):
    if scene.render.engine != "CYCLES" or not scene.cycles.use_denoising:
        return False
    # Each view layer can turn it off for itself (Cycles' per-layer flag).
    layers = [layer for layer in scene.view_layers if layer.use]
    flags = [getattr(layer.cycles, "use_denoising", True) for layer in layers]
    return any(flags) if flags else True


def denoiser_problems(scene):
    if not denoising_on(scene):
        return []
    denoiser = scene.cycles.denoiser
    if denoiser_available(denoiser):
        return []
    # A build lacking every denoiser lists none, and Python then reads the scene's
    # choice as "".
    label = {"OPENIMAGEDENOISE": "OpenImageDenoise", "OPTIX": "OptiX",
             "": "OpenImageDenoise or OptiX"}.get(denoiser, clean(denoiser))
    return [problem("DENOISER_UNAVAILABLE", "error",
                    f"Cycles denoising is on, but this Blender {bpy.app.version_string} has "
                    f"no {label} denoiser: every frame would fail. The job can render "
                    "without denoising instead.", fix="disable_denoising")]


# --- files, versions, scripts ----------------------------------------------

def missing_file_message(entry):
    kind = entry["kind"].replace("_", " ")
    where = f' of library "{clean(entry["library"])}"' if "library" in entry else ""
    return (f'The {kind} "{clean(entry["ref"], 120)}" used by "{clean(entry["owner"])}"{where} '
            "is not in the project: Blender would render without it.")


def missing_file_problems():
    return [problem("MISSING_FILE", "warning", missing_file_message(entry), path=entry["ref"])
            for entry in missing_files()]


def datablocks_with_drivers():
    """(datablock, animation data) for everything that can hold drivers."""
    for attribute in dir(bpy.data):
        collection = getattr(bpy.data, attribute, None)
        if not isinstance(collection, bpy.types.bpy_prop_collection):
            continue
        for datablock in collection:
            if not isinstance(datablock, bpy.types.ID):
                continue
            # Materials', worlds' and scenes' node trees are embedded, not in bpy.data.
            for owner in (datablock, getattr(datablock, "node_tree", None)):
                if owner is not None and getattr(owner, "animation_data", None):
                    yield datablock, owner.animation_data


def python_drivers():
    found = []
    for datablock, animation in datablocks_with_drivers():
        for curve in animation.drivers:
            driver = curve.driver
            if driver.type == "SCRIPTED" and not driver.is_simple_expression:
                found.append(f"{datablock.name}: {driver.expression}")
    return found


def script_problems(allow_scripts):
    if allow_scripts:
        return []
    texts = [text.name for text in bpy.data.texts if text.use_module]
    drivers = python_drivers()
    blocked = clean(bpy.app.autoexec_fail_message, 80) if bpy.app.autoexec_fail else ""
    if not (texts or drivers or blocked):
        return []
    parts = []
    if drivers:
        parts.append(f"Python drivers ({names(drivers)})")
    if texts:
        parts.append(f"registered scripts ({names(texts)})")
    if blocked and not parts:
        parts.append(f"scripts ({blocked})")
    return [problem("SCRIPTS_NEEDED", "warning",
                    f"The scene uses {' and '.join(parts)}, which do not run while scripts "
                    "are off: what they drive renders as saved.")]


def problems(scene, allow_scripts):
    """Every problem found, errors first, at most MAX_PROBLEMS."""
    found = (camera_problems(scene) + denoiser_problems(scene) + engine_problems(scene)
             + missing_file_problems() + script_problems(allow_scripts))
    found.sort(key=lambda entry: entry["severity"] != "error")  # stable: errors first
    return found[:MAX_PROBLEMS]
