"""Generate a small, deterministic test scene for Archenland's tests.

Run:
  blender -b --factory-startup --python blender/test_scenes/make_test_scene.py -- \
      --output X.blend [--frames 1-10] [--width 64 --height 48] [--samples 4] \
      [--engine CYCLES] [--fps 24] [--denoise] [--glare] [--detail] \
      [--format PNG|OPEN_EXR|OPEN_EXR_MULTILAYER] [--color-depth 8|16|32] [--no-camera] [--passes] \
      [--fake-engine NAME]

The scene has a coloured cube that moves and turns across the frame range, a
ground plane, a sun light and a camera, so consecutive frames differ visibly.
Cycles renders on the CPU with denoising off (Debian's Blender has no
OpenImageDenoise) unless --denoise asks for it, to reproduce that failure.
--detail adds a checkered ground and more objects, so every part of the frame
has edges and shading (tests comparing regions of a frame need that).
--glare puts a compositor Glare node between Render Layers and Composite: an
effect that spreads light across pixels, so such frames must not be tiled.
--format and --color-depth choose the output files (8/16-bit PNG, half/full
float OpenEXR), e.g. to test stitching tiles of each kind.
--no-camera removes the camera: Blender cannot render the scene ("Error: Cannot
render, no camera"), the probe reports NO_CAMERA.
--passes adds a compositor File Output node writing extra passes beside the
.blend ("//passes/"): the depth normalised to 0..1 ("depth_####.png") and the
normal pass ("normal_####.png"), 8-bit PNG, next to the usual Composite image.
--fake-engine NAME saves the scene with a render engine that only exists while
the generator runs (registered here, as an add-on would): elsewhere Blender says
"Engine 'NAME' not available" and renders with EEVEE; the probe reports
ENGINE_UNAVAILABLE.
"""

import argparse
import math
import os
import sys

import bpy

# Blender's --python does not put the script's folder on sys.path, and
# scene_kit.py lives beside this script.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scene_kit import (  # noqa: E402
    add_camera, add_sun, clear_scene, configure_render,
    fresh_compositor, make_linear, make_material, parse_frames, run_generator,
)


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    parser = argparse.ArgumentParser(prog="make_test_scene.py")
    parser.add_argument("--output", required=True, help="path of the .blend to write")
    parser.add_argument("--frames", default="1-10", help="frame range, e.g. 1-10 or 5")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--engine", default="CYCLES",
                        choices=["CYCLES", "BLENDER_EEVEE", "BLENDER_WORKBENCH"])
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--denoise", action="store_true")
    parser.add_argument("--detail", action="store_true",
                        help="checkered ground and more objects all over the frame")
    parser.add_argument("--glare", action="store_true",
                        help="compositor: Render Layers -> Glare -> Composite")
    parser.add_argument("--format", default="PNG", choices=["PNG", "OPEN_EXR", "OPEN_EXR_MULTILAYER"],
                        help="output file format")
    parser.add_argument("--color-depth", default=None, choices=["8", "16", "32"],
                        help="bits per channel; default 8 for PNG, 32 for OPEN_EXR")
    parser.add_argument("--no-camera", action="store_true", help="no camera in the scene")
    parser.add_argument("--passes", action="store_true",
                        help="compositor File Output node writing depth and normal PNGs to //passes/")
    parser.add_argument("--stereo", default=None, metavar="RIGHT_SUFFIX",
                        help="stereo 3D, each eye saved as a file of its own; the right eye's "
                             "file suffix is RIGHT_SUFFIX (Blender's default: _R)")
    parser.add_argument("--fake-engine", default=None, metavar="NAME",
                        help="save with a render engine no Blender has (NAME, e.g. FARM_FAKE_ENGINE)")
    parser.add_argument("--misbehave", default=None, metavar="KIND:FRAME",
                        help="embed a script that makes Blender crash or hang on FRAME, or print "
                             "30 progress lines over 3 s before rendering it (crash:3, hang:3, chatter:3); "
                             "it runs only when Python auto-exec is allowed")
    return parser.parse_args(argv)


def build_objects(scene, frame_start, frame_end):
    bpy.ops.mesh.primitive_plane_add(size=20, location=(0, 0, 0))
    ground = bpy.context.active_object
    ground.name = "Ground"
    ground.data.materials.append(make_material("GroundGreen", (0.2, 0.6, 0.25, 1.0)))

    bpy.ops.mesh.primitive_cube_add(size=1.5, location=(-3, 0, 0.75))
    cube = bpy.context.active_object
    cube.name = "Mover"
    cube.data.materials.append(make_material("MoverRed", (0.85, 0.1, 0.05, 1.0)))

    # Motion across the whole range: left to right while turning half a turn.
    # Linear interpolation so every frame, even the first and last, moves.
    span = max(frame_end - frame_start, 1)
    cube.location = (-3, 0, 0.75)
    cube.rotation_euler = (0, 0, 0)
    cube.keyframe_insert("location", frame=frame_start)
    cube.keyframe_insert("rotation_euler", frame=frame_start)
    cube.location = (3, 0, 0.75)
    cube.rotation_euler = (0, 0, math.pi)
    cube.keyframe_insert("location", frame=frame_start + span)
    cube.keyframe_insert("rotation_euler", frame=frame_start + span)
    make_linear(cube)

    add_sun((4, -4, 8), (math.radians(40), math.radians(10), math.radians(30)), energy=4.0)
    add_camera(scene, (0, -10, 5), (math.radians(65), 0, 0))


def checker_material(name, color1, color2, scale):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    checker = nodes.new("ShaderNodeTexChecker")
    checker.inputs["Color1"].default_value = color1
    checker.inputs["Color2"].default_value = color2
    checker.inputs["Scale"].default_value = scale
    links.new(checker.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
    mat.diffuse_color = color1  # what Workbench shows
    return mat


def add_detail():
    """Edges, shading and shadows in every part of the frame, not just around the cube."""
    ground = bpy.data.objects["Ground"]
    ground.data.materials[0] = checker_material(
        "GroundChecker", (0.2, 0.6, 0.25, 1.0), (0.9, 0.9, 0.8, 1.0), scale=12.0)
    shapes = [  # (operator, location, colour), spread over the view
        (bpy.ops.mesh.primitive_uv_sphere_add, (1.5, -1.5, 0.6), (0.1, 0.3, 0.9, 1.0)),
        (bpy.ops.mesh.primitive_cone_add, (4.0, 2.5, 1.0), (0.9, 0.8, 0.1, 1.0)),
        (bpy.ops.mesh.primitive_cylinder_add, (-2.0, 4.0, 1.0), (0.6, 0.2, 0.7, 1.0)),
        (bpy.ops.mesh.primitive_torus_add, (-4.0, -2.5, 0.3), (0.9, 0.4, 0.6, 1.0)),
    ]
    for index, (add, location, rgba) in enumerate(shapes):
        add(location=location)
        obj = bpy.context.active_object
        obj.name = f"Detail{index}"
        obj.data.materials.append(make_material(f"Detail{index}", rgba))


def add_glare(scene):
    tree, layers, composite = fresh_compositor(scene)
    glare = tree.nodes.new("CompositorNodeGlare")
    glare.glare_type = "FOG_GLOW"
    glare.threshold = 0.5  # low enough that the lit cube and ground glow
    tree.links.new(layers.outputs["Image"], glare.inputs["Image"])
    tree.links.new(glare.outputs["Image"], composite.inputs["Image"])


def add_passes(scene):
    """Render Layers -> Composite, plus a File Output node saving depth and normals."""
    layer = scene.view_layers[0]
    layer.use_pass_z = True
    layer.use_pass_normal = True
    tree, layers, composite = fresh_compositor(scene)
    tree.links.new(layers.outputs["Image"], composite.inputs["Image"])
    normalize = tree.nodes.new("CompositorNodeNormalize")
    tree.links.new(layers.outputs["Depth"], normalize.inputs[0])
    output = tree.nodes.new("CompositorNodeOutputFile")
    output.name = "Passes"
    output.base_path = "//passes/"
    output.format.file_format = "PNG"
    output.format.color_mode = "RGB"
    output.format.color_depth = "8"
    output.file_slots[0].path = "depth_"
    output.file_slots.new("normal_")
    tree.links.new(normalize.outputs[0], output.inputs[0])
    tree.links.new(layers.outputs["Normal"], output.inputs[1])


def use_fake_engine(scene, name):
    """Register an engine under `name` just long enough to save the scene with it."""
    engine = type("FakeEngine", (bpy.types.RenderEngine,),
                  {"bl_idname": name, "bl_label": "Archenland test engine"})
    bpy.utils.register_class(engine)
    scene.render.engine = name


def configure_world(scene):
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.3, 0.4, 0.7, 1.0)
    world.color = (0.3, 0.4, 0.7)


# Embedded in the .blend as a registered text block, so it runs on load only when
# auto-execution is allowed (-y): the farm's fault tests use it to make Blender die or
# stall on one frame, the way a broken add-on or driver would, or chatter as a slow render does.
MISBEHAVE_SCRIPT = '''
import bpy, os, time
KIND, FRAME = {kind!r}, {frame}
def archenland_misbehave(scene, *args):
    if scene.frame_current == FRAME:
        if KIND == "crash":
            os._exit(3)
        if KIND == "chatter":
            # Progress lines as a slow render prints them, one per sample, 100 ms apart.
            for sample in range(1, 31):
                print(f"Fra:{{FRAME}} Mem:1.00M (Peak 1.00M) | Time:00:00.00 | Scene, ViewLayer | Sample {{sample}}/30", flush=True)
                time.sleep(0.1)
            return
        while True:
            time.sleep(1)
bpy.app.handlers.render_pre.append(archenland_misbehave)
'''


def use_stereo(scene, right_suffix):
    scene.render.use_multiview = True
    scene.render.views_format = "STEREO_3D"
    scene.render.image_settings.views_format = "INDIVIDUAL"
    scene.render.views["right"].file_suffix = right_suffix
    # Eyes far apart, so even a tiny frame shows two different images.
    scene.camera.data.stereo.interocular_distance = 1.0


def embed_misbehaviour(spec):
    kind, frame = spec.split(":")
    if kind not in ("crash", "hang", "chatter"):
        raise ValueError(f"--misbehave takes crash:N, hang:N or chatter:N, not {spec}")
    text = bpy.data.texts.new("archenland_misbehave.py")
    text.write(MISBEHAVE_SCRIPT.format(kind=kind, frame=int(frame)))
    text.use_module = True  # "Register": run when the file is loaded with auto-exec on


def main():
    args = parse_args()
    frame_start, frame_end = parse_frames(args.frames)
    scene = bpy.context.scene
    clear_scene()
    build_objects(scene, frame_start, frame_end)
    if args.detail:
        add_detail()
    configure_world(scene)
    configure_render(scene, frame_start=frame_start, frame_end=frame_end, width=args.width,
                     height=args.height, samples=args.samples, engine=args.engine, fps=args.fps,
                     denoise=args.denoise, file_format=args.format,
                     color_depth=args.color_depth)
    if args.glare:
        add_glare(scene)
    if args.passes:
        add_passes(scene)
    if args.stereo:
        use_stereo(scene, args.stereo)
    if args.no_camera:
        bpy.data.objects.remove(scene.camera, do_unlink=True)
    if args.fake_engine:
        use_fake_engine(scene, args.fake_engine)
    if args.misbehave:
        embed_misbehaviour(args.misbehave)
    # Uncompressed, so the file starts with the plain "BLENDER" header.
    bpy.ops.wm.save_as_mainfile(filepath=args.output, compress=False)
    print(f"make_test_scene: wrote {args.output}", flush=True)


run_generator(main, "make_test_scene")
