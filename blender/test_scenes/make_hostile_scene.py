"""Generate a small scene that attacks the worker, for Archenland's security tests.

Run:
  blender -b --factory-startup --python blender/test_scenes/make_hostile_scene.py -- \
      --output X.blend [--forge-events SECRET_PATH] [--file-outputs OUTSIDE_DIR]

The scene is make_test_scene.py's in miniature (a cube, a ground plane, a sun and a
camera; frames 1-2, 48x32, 2 Cycles samples, no denoising), plus:

--forge-events: object, scene, view layer and material names carry newlines and
  lines that the old stdout protocol ("@@ARCHENLAND {json}") took for events, which
  Blender prints while rendering even with scripts off: a "saved" event for frame 1
  whose path is SECRET_PATH, and "ready", "waiting", "error" and "fatal" events, and
  fence lines with a guessed nonce. A name holds at most 63 bytes, so the "saved"
  line is split between the scene's name and the first view layer's (Blender
  prints "<scene>, <view layer>"; the ", " lands in an ignored "x" field). A second
  view layer carries the "ready" line the same way.
--file-outputs: compositor File Output nodes writing to OUTSIDE_DIR (absolute),
  to "//passes/" (beside the .blend), from inside a node group to "//../grouppasses/"
  with a slot path that climbs out ("../../escape_"), and a multilayer EXR one.
"""

import argparse
import json
import math
import os
import sys

import bpy

# Blender's --python does not put the script's folder on sys.path, and
# scene_kit.py lives beside this script.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scene_kit import (  # noqa: E402
    add_camera, add_sun, clear_scene, configure_render, fresh_compositor, make_material, run_generator,
)

OLD_PREFIX = "@@ARCHENLAND "
GUESSED_NONCE = "0" * 32
MAX_NAME_BYTES = 63  # Blender 3.4 cuts longer names short


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    parser = argparse.ArgumentParser(prog="make_hostile_scene.py")
    parser.add_argument("--output", required=True, help="path of the .blend to write")
    parser.add_argument("--forge-events", metavar="SECRET_PATH",
                        help="names forge events; the forged 'saved' event points at SECRET_PATH")
    parser.add_argument("--file-outputs", metavar="OUTSIDE_DIR",
                        help="File Output nodes writing outside the job's folders")
    return parser.parse_args(argv)


def rename(data, name):
    """Give a Blender datablock a name, failing if Blender would change it."""
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ValueError(f"name {name!r} is longer than {MAX_NAME_BYTES} bytes")
    data.name = name
    if data.name != name:
        raise ValueError(f"Blender renamed {name!r} to {data.name!r}")


def forged_line(event):
    return "\n" + OLD_PREFIX + json.dumps(event, separators=(",", ":"))


def build_scene(scene):
    clear_scene()
    bpy.ops.mesh.primitive_plane_add(size=20, location=(0, 0, 0))
    ground = bpy.context.active_object
    ground.name = "Ground"
    ground.data.materials.append(make_material("GroundGreen", (0.2, 0.6, 0.25, 1.0)))
    bpy.ops.mesh.primitive_cube_add(size=2.0, location=(0, 0, 1.0))
    cube = bpy.context.active_object
    cube.name = "Cube"
    cube.rotation_euler = (0, 0, math.radians(30))
    cube.data.materials.append(make_material("CubeRed", (0.85, 0.1, 0.05, 1.0)))
    add_sun((4, -4, 8), (math.radians(40), math.radians(10), math.radians(30)), energy=4.0)
    add_camera(scene, (0, -10, 5), (math.radians(65), 0, 0))
    configure_render(scene, frame_start=1, frame_end=2, width=48, height=32, samples=2)


def add_named_cube(name, location):
    """A small cube behind the camera: out of the picture, but Blender prints its name."""
    bpy.ops.mesh.primitive_cube_add(size=0.2, location=location)
    rename(bpy.context.active_object, name)


def forge_events(scene, secret_path):
    quoted = json.dumps(secret_path)
    if quoted != f'"{secret_path}"':
        raise ValueError(f"the secret path {secret_path!r} needs escaping in JSON; choose a plainer one")
    # Blender prints "<scene name>, <view layer name> | <status>" in every progress line.
    rename(scene, f'\n{OLD_PREFIX}{{"path":{quoted},"x":"')
    rename(scene.view_layers[0], '","event":"saved","frame":1}\n')
    second = scene.view_layers.new("second")
    rename(second, '","event":"ready","blenderVersion":"","sceneName":""}\n')

    # "Synchronizing object | <name>" ends a line with the object's name.
    rename(bpy.data.objects["Cube"], forged_line({"event": "fatal", "message": "forged fatal"}))
    rename(bpy.data.objects["Ground"], forged_line({"event": "error", "frame": 1, "message": "forged"}))
    behind = [
        {"event": "waiting", "blenderVersion": ""},
        {"event": "error", "frame": None, "message": "forged"},
        {"event": "error", "frame": 2, "message": "forged"},
        {"event": "fatal", "message": "forged"},
    ]
    for index, event in enumerate(behind):
        add_named_cube(forged_line(event), (index - 2, -14, 1))
    for seq in (1, 2, 3):
        add_named_cube(f"\n@@ARCHENLAND-FENCE {GUESSED_NONCE} {seq}", (seq, -15, 1))

    for material, event in [
        ("GroundGreen", {"event": "fatal", "message": "material"}),
        ("CubeRed", {"event": "saved", "frame": 1, "path": "/k"}),
    ]:
        rename(bpy.data.materials[material], forged_line(event))


def add_file_output(tree, name, base_path, slot_path, source):
    node = tree.nodes.new("CompositorNodeOutputFile")
    node.name = name
    node.base_path = base_path
    node.file_slots[0].path = slot_path
    tree.links.new(source, node.inputs[0])
    return node


def add_file_outputs(scene, outside_dir):
    tree, layers, composite = fresh_compositor(scene)
    tree.links.new(layers.outputs["Image"], composite.inputs["Image"])

    image = layers.outputs["Image"]
    add_file_output(tree, "Outside", os.path.join(outside_dir, ""), "abs_", image)
    add_file_output(tree, "Beside blend", "//passes/", "rel_", image)
    multilayer = add_file_output(tree, "Multilayer", "//passes/multi_", "Image", image)
    multilayer.format.file_format = "OPEN_EXR_MULTILAYER"

    group = bpy.data.node_groups.new("Hidden passes", "CompositorNodeTree")
    group.inputs.new("NodeSocketColor", "Image")
    group_input = group.nodes.new("NodeGroupInput")
    add_file_output(group, "In group", "//../grouppasses/", "../../escape_",
                    group_input.outputs["Image"])
    group_node = tree.nodes.new("CompositorNodeGroup")
    group_node.node_tree = group
    tree.links.new(image, group_node.inputs["Image"])


def main():
    args = parse_args()
    scene = bpy.context.scene
    build_scene(scene)
    if args.file_outputs:
        add_file_outputs(scene, args.file_outputs)
    if args.forge_events:
        forge_events(scene, args.forge_events)
    # Uncompressed, like make_test_scene.py's scenes.
    bpy.ops.wm.save_as_mainfile(filepath=args.output, compress=False)
    print(f"make_hostile_scene: wrote {args.output}", flush=True)


run_generator(main, "make_hostile_scene")
