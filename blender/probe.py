"""Print a scene's render settings as one machine-readable line, then exit.

Run: blender -b file.blend [-Y] --python blender/probe.py
Output: @@ARCHENLAND {"event": "probe", ...}  (parsed by src/worker/blender/probe.ts)
"""

import json
import sys

import bpy

PREFIX = "@@ARCHENLAND "


def sample_count(scene):
    engine = scene.render.engine
    if engine == "CYCLES":
        return scene.cycles.samples
    if engine == "BLENDER_EEVEE":
        return scene.eevee.taa_render_samples
    return None  # Workbench and third-party engines have no comparable count


def denoising_enabled(scene):
    # Only Cycles' render denoiser matters here: Debian's Blender lacks
    # OpenImageDenoise, so a Cycles scene with it on cannot render.
    return scene.render.engine == "CYCLES" and bool(scene.cycles.use_denoising)


def describe(scene):
    render = scene.render
    return {
        "event": "probe",
        "frameStart": scene.frame_start,
        "frameEnd": scene.frame_end,
        "frameStep": scene.frame_step,
        "fps": render.fps / render.fps_base,
        "resolutionX": render.resolution_x,
        "resolutionY": render.resolution_y,
        "resolutionPercentage": render.resolution_percentage,
        "engine": render.engine,
        "fileFormat": render.image_settings.file_format,
        "samples": sample_count(scene),
        "denoising": denoising_enabled(scene),
        "blenderVersion": bpy.app.version_string,
        "sceneName": scene.name,
    }


sys.stdout.write(PREFIX + json.dumps(describe(bpy.context.scene)) + "\n")
sys.stdout.flush()
