"""What the farm reads from a scene: its render settings, why its frames must not be
split into tiles, and the preflight's problems. probe.py reports it from a Blender of its
own; session.py from the session that goes on to render the job ("probe" command).

"tileBlockers" lists, in words for the user, why frames of this scene must not
be split into tiles (border renders stitched together): effects that work on
the whole image, so a tile rendered alone differs from the same region of the
whole frame. It errs on the side of blocking: a missed blocker shows as seams.
"""

import bpy

from .preflight import problems
from .versions import file_version, saved_with

# Blender's flags that let the .blend's own Python run (the farm starts Blender with one
# of -y / -Y; without either, the user's preferences decide, and the farm's are off).
ALLOW_SCRIPTS_FLAGS = ("-y", "--enable-autoexec")


def scripts_allowed_by(argv):
    """Whether Blender's own command line (before "--") let the scene's scripts run."""
    blender_args = argv[:argv.index("--")] if "--" in argv else argv
    return any(flag in blender_args for flag in ALLOW_SCRIPTS_FLAGS)


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


# Compositor nodes whose output at a pixel depends only on the inputs at that
# same pixel (or on no image at all). Anything else - blurs, glare, filters,
# transforms, masks placed in frame coordinates, images, groups we cannot see
# into - blocks tiles. File Output is reported on its own (see below).
PER_PIXEL_NODES = {
    # Inputs, outputs and layout
    "R_LAYERS", "COMPOSITE", "VIEWER", "SPLITVIEWER", "REROUTE", "FRAME",
    "VALUE", "RGB", "TIME", "SCENE_TIME",
    # Colour
    "MIX_RGB", "ALPHAOVER", "CURVE_RGB", "CURVE_VEC", "HUE_SAT", "HUECORRECT",
    "BRIGHTCONTRAST", "GAMMA", "COLORBALANCE", "COLORCORRECTION", "EXPOSURE",
    "INVERT", "POSTERIZE", "CONVERT_COLORSPACE", "ZCOMBINE",
    # Converters
    "MATH", "VALTORGB", "RGBTOBW", "SETALPHA", "PREMULKEY", "ID_MASK",
    "MAP_VALUE", "MAP_RANGE", "NORMAL", "SWITCH", "VIEWSWITCH",
    "SEPARATE_COLOR", "COMBINE_COLOR", "SEPARATE_XYZ", "COMBINE_XYZ",
    "SEPRGBA", "COMBRGBA", "SEPHSVA", "COMBHSVA", "SEPYUVA", "COMBYUVA",
    "SEPYCCA", "COMBYCCA",
    # Keyers that compare each pixel with a key colour (not KEYING: it blurs)
    "CHANNEL_MATTE", "CHROMA_MATTE", "COLOR_MATTE", "DIFF_MATTE",
    "DISTANCE_MATTE", "LUMA_MATTE", "COLOR_SPILL",
}
MAX_NAMES = 6
MAX_REASON_CHARS = 300  # the server's limit (sceneInfoSchema in src/protocol/scene.ts)


def spreads_across_pixels(node):
    """Whether this compositor node's output at a pixel can depend on other pixels."""
    if node.mute:
        return False  # a muted node passes its input through unchanged
    if node.type == "OUTPUT_FILE":
        return False  # per pixel, but blocks for another reason: see compositor_blockers
    if node.type not in PER_PIXEL_NODES:
        return True
    # Two allowed nodes have an anti-aliasing option that smooths across edges.
    if node.type == "ID_MASK" and node.use_antialiasing:
        return True
    if node.type == "ZCOMBINE" and node.use_antialias_z:
        return True
    return False


def node_label(node):
    if node.type == "GROUP" and node.node_tree is not None:
        return f"node group \"{node.node_tree.name}\""
    return node.bl_label


def named_list(labels):
    """Distinct labels in order, at most a few, as "A, B and 2 more"."""
    unique = list(dict.fromkeys(labels))
    shown = ", ".join(unique[:MAX_NAMES])
    hidden = len(unique) - MAX_NAMES
    return f"{shown} and {hidden} more" if hidden > 0 else shown


def agree(labels, singular, plural):
    """The verb for a list of labels: "Glare spreads", "Glare, Blur spread"."""
    return singular if len(set(labels)) == 1 else plural


def compositor_blockers(scene):
    tree = scene.node_tree
    if not (scene.use_nodes and scene.render.use_compositing and tree is not None):
        return []
    reasons = []
    spreading = [node_label(node) for node in tree.nodes if spreads_across_pixels(node)]
    if spreading:
        reasons.append(f"the compositor uses {named_list(spreading)}, which "
                       f"{agree(spreading, 'spreads', 'spread')} across tile edges")
    # Each tile would write its own piece of the frame under the same file name.
    if any(node.type == "OUTPUT_FILE" and not node.mute for node in tree.nodes):
        reasons.append("the compositor has a File Output node: it saves whole-frame "
                       "files that tiles would overwrite with pieces")
    # A Render Layers node of another scene renders that scene in full, under its
    # own border settings, and lays it over ours.
    others = [node.scene.name for node in tree.nodes
              if node.type == "R_LAYERS" and not node.mute
              and node.scene is not None and node.scene != scene]
    if others:
        reasons.append(f"the compositor uses render layers of another scene "
                       f"({named_list(others)})")
    return reasons


def eevee_blockers(scene):
    # Screen-space effects read neighbouring pixels. Blender 3.4's EEVEE draws
    # the whole view for a border render and crops it, so such tiles matched in
    # our tests; they stay blockers because that is an implementation detail
    # (and an EEVEE tile costs about as much as the whole frame anyway).
    eevee = scene.eevee
    effects = []
    if eevee.use_bloom:
        effects.append("bloom")
    if eevee.use_gtao:
        effects.append("ambient occlusion")
    if eevee.use_ssr:
        effects.append("screen-space reflections")
    if eevee.use_motion_blur:
        effects.append("motion blur")
    camera = scene.camera
    if camera is not None and camera.type == "CAMERA" and camera.data.dof.use_dof:
        effects.append("depth of field")
    if not effects:
        return []
    return [f"EEVEE {named_list(effects)} {agree(effects, 'works', 'work')} on the whole image"]


def workbench_blockers(scene):
    shading = scene.display.shading
    effects = []
    if shading.show_cavity:
        effects.append("cavity")
    if shading.show_object_outline:
        effects.append("outline")
    if shading.use_dof:
        effects.append("depth of field")
    if not effects:
        return []
    return [f"Workbench {named_list(effects)} {agree(effects, 'works', 'work')} on the whole image"]


def engine_blockers(scene):
    engine = scene.render.engine
    if engine == "CYCLES":
        # Cycles itself is per pixel (motion blur and depth of field included);
        # only its denoiser looks at neighbours.
        if scene.cycles.use_denoising:
            return ["denoising is on: it works on the whole image"]
        return []
    if engine == "BLENDER_EEVEE":
        return eevee_blockers(scene)
    if engine == "BLENDER_WORKBENCH":
        return workbench_blockers(scene)
    return [f"the render engine {engine} is not known to render tiles correctly"]


def output_blockers(scene):
    render = scene.render
    reasons = []
    if render.use_border:
        # Tiles would cover the whole frame while a whole render covers the border.
        reasons.append("the scene renders only a region of the frame (render border)")
    if render.use_freestyle:
        reasons.append("Freestyle lines are on: strokes are drawn over the whole image")
    if render.use_multiview:
        reasons.append("the scene renders several views (stereo): each view is a whole image of its own")
    if render.use_stamp:
        reasons.append("metadata is burnt into the image: each tile would get its own stamp")
    editor = scene.sequence_editor
    if render.use_sequencer and editor is not None and len(editor.sequences_all) > 0:
        reasons.append("the video sequencer has strips: frames come from the sequencer, "
                       "not from a render of the scene")
    return reasons


def tile_blockers(scene):
    reasons = engine_blockers(scene) + compositor_blockers(scene) + output_blockers(scene)
    # Long scene or group names must not make the whole probe invalid.
    return [reason if len(reason) <= MAX_REASON_CHARS else reason[:MAX_REASON_CHARS - 1] + "…"
            for reason in reasons]


def describe(scene, allow_scripts):
    """The scene's settings as the farm's SceneInfo (src/protocol/scene.ts)."""
    render = scene.render
    return {
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
        "tileBlockers": tile_blockers(scene),
        "savedWith": saved_with(),
        "fileVersion": file_version(),
        "problems": problems(scene, allow_scripts),
    }
