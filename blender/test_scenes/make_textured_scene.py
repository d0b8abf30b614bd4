"""Generate a small test scene whose material uses an EXTERNAL image texture.

Run:
  blender -b --factory-startup --python blender/test_scenes/make_textured_scene.py -- \
      --output X.blend --texture T.png [--relative] [--frames 1-2] \
      [--width 64 --height 48] [--samples 4]

The texture file is referenced, not packed: the .blend stores only its path
(absolute, or with --relative a "//..." path relative to the .blend's folder).
Rendering the scene where that file is missing gives Blender's magenta
"missing texture" colour instead of the texture, so a render farm that did not
ship the texture with the scene produces visibly different pixels.

The scene: a textured plane filling most of the view (emission shader, so the
texture's colours reach the image directly, "Closest" interpolation so texels
stay crisp), a small cube that moves across the frame range so frames differ,
a camera, Cycles on the CPU with denoising off (Debian's Blender has no
OpenImageDenoise).
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
    emission_material, make_linear, make_material, parse_frames, run_generator,
)


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    parser = argparse.ArgumentParser(prog="make_textured_scene.py")
    parser.add_argument("--output", required=True, help="path of the .blend to write")
    parser.add_argument("--texture", required=True, help="image file the material uses (must exist)")
    parser.add_argument("--relative", action="store_true",
                        help='store the texture path relative to the .blend ("//...")')
    parser.add_argument("--frames", default="1-2", help="frame range, e.g. 1-2 or 5")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--samples", type=int, default=4)
    return parser.parse_args(argv)


def build_objects(scene, image, frame_start, frame_end):
    # A plane facing the camera (rotated up from the ground), filling most of the view.
    bpy.ops.mesh.primitive_plane_add(size=8, location=(0, 0, 0), rotation=(math.radians(90), 0, 0))
    board = bpy.context.active_object
    board.name = "Board"
    board.data.materials.append(emission_material("CheckerTexture", image))

    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(-2, -1.5, 0))
    cube = bpy.context.active_object
    cube.name = "Mover"
    cube.data.materials.append(make_material("MoverRed", (0.85, 0.1, 0.05, 1.0)))
    span = max(frame_end - frame_start, 1)
    cube.keyframe_insert("location", frame=frame_start)
    cube.location = (2, -1.5, 0)
    cube.keyframe_insert("location", frame=frame_start + span)
    make_linear(cube)

    add_sun((0, -6, 6), (math.radians(45), 0, 0), energy=3.0)
    add_camera(scene, (0, -10, 0), (math.radians(90), 0, 0))


def configure(scene, args, frame_start, frame_end):
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.05, 0.05, 0.08, 1.0)

    configure_render(scene, frame_start=frame_start, frame_end=frame_end, width=args.width,
                     height=args.height, samples=args.samples)

def main():
    args = parse_args()
    frame_start, frame_end = parse_frames(args.frames)
    texture = os.path.abspath(args.texture)
    output = os.path.abspath(args.output)
    if not os.path.isfile(texture):
        raise FileNotFoundError(f"texture {texture} does not exist")

    scene = bpy.context.scene
    clear_scene()
    image = bpy.data.images.load(texture, check_existing=False)
    image.name = os.path.basename(texture)
    build_objects(scene, image, frame_start, frame_end)
    configure(scene, args, frame_start, frame_end)

    if args.relative:
        # A "//" path means "relative to the .blend"; it is stored as written.
        rel = os.path.relpath(texture, os.path.dirname(output)).replace(os.sep, "/")
        image.filepath = "//" + rel
    else:
        image.filepath = texture
    if image.packed_file is not None:  # never: the point is an external file
        raise RuntimeError("the texture ended up packed")

    # Uncompressed, so the file starts with the plain "BLENDER" header.
    bpy.ops.wm.save_as_mainfile(filepath=output, compress=False, relative_remap=False)
    print(f"make_textured_scene: wrote {output} using texture {image.filepath}", flush=True)


run_generator(main, "make_textured_scene")
