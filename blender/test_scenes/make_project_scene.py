"""Generate a small studio-style PROJECT: a .blend and the external files it uses.

Run:
  blender -b --factory-startup --python blender/test_scenes/make_project_scene.py -- \
      --dir D [--frames 1-2] [--width 32 --height 24] [--samples 2] [--absolute-library]

Writes, all generated here (no file from outside the repository):
  D/shots/main.blend        the scene to render (saved uncompressed, scripts none)
  D/tex/checker.png         texture by RELATIVE path    "//../tex/checker.png"
  D/abs/abs_tex.png         texture by ABSOLUTE path    "D/abs/abs_tex.png"
  D/seq/f_0001.png ...      image sequence, one file per frame, each another colour
                            (stored as "//../seq/f_0001.png", source SEQUENCE)
  D/udim/tile.1001.png      UDIM tiles 1001 and 1002    "//../udim/tile.<UDIM>.png"
  D/udim/tile.1002.png
  D/lib/props.blend         linked library ("//../lib/props.blend"): object "Prop"
                            whose material uses a texture relative to THE LIBRARY:
  D/lib/tex_lib/lib_tex.png   "//tex_lib/lib_tex.png" inside props.blend
                            (--absolute-library: both by absolute path instead)
  D/shots/blendcache_main/  a particle system's baked disk cache (Blender 3.4 here has
                            no Alembic or USD, so the cache folder is a point cache)

Everything is seen by an orthographic camera as six tiles (three on top, three
below), each an emission material with "Closest" interpolation, so each file
changes its own pixels: a missing one shows magenta (or, for the cache,
particles in other places). After baking, the particles' speed is changed: a
render that re-simulated instead of reading the cache would differ. Cycles on
the CPU, fixed seed, denoising off.
"""

import argparse
import math
import os
import sys

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scene_kit import (  # noqa: E402
    add_camera, clear_scene, configure_render, emission_material, parse_frames, run_generator, write_png,
)

TEXTURE_SIZE = 8
TILE_SIZE = 2.4          # world units; the camera sees 8 x 6
COLUMNS = (-2.6, 0.0, 2.6)
ROWS = (1.4, -1.4)


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    parser = argparse.ArgumentParser(prog="make_project_scene.py")
    parser.add_argument("--dir", required=True, help="project folder to write")
    parser.add_argument("--frames", default="1-2")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--height", type=int, default=24)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--absolute-library", action="store_true",
                        help="link the library, and give its texture, by absolute paths")
    return parser.parse_args(argv)


def checker(color1, color2, cell=2):
    def pixel(x, y):
        return color1 if (x // cell + y // cell) % 2 == 0 else color2
    return pixel


def solid(color):
    return lambda x, y: color


def write_textures(root, frame_start, frame_end):
    size = TEXTURE_SIZE
    paths = {
        "checker": os.path.join(root, "tex", "checker.png"),
        "abs": os.path.join(root, "abs", "abs_tex.png"),
        "lib": os.path.join(root, "lib", "tex_lib", "lib_tex.png"),
        "udim1001": os.path.join(root, "udim", "tile.1001.png"),
        "udim1002": os.path.join(root, "udim", "tile.1002.png"),
    }
    patterns = {
        "checker": checker((1, 1, 1, 1), (0.1, 0.1, 0.1, 1)),
        "abs": checker((0.1, 0.3, 1, 1), (1, 0.9, 0.1, 1), cell=4),
        "lib": checker((0.1, 0.9, 0.2, 1), (0.5, 0.1, 0.6, 1), cell=1),
        "udim1001": solid((1, 0.5, 0, 1)),
        "udim1002": solid((0, 0.8, 0.9, 1)),
    }
    for key, path in paths.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_png(path, size, size, patterns[key])
    os.makedirs(os.path.join(root, "seq"), exist_ok=True)
    for frame in range(frame_start, frame_end + 1):
        shade = (frame - frame_start + 1) / (frame_end - frame_start + 2)
        write_png(os.path.join(root, "seq", f"f_{frame:04d}.png"), size, size,
                  solid((shade, 0.2, 1 - shade, 1)))
    return paths


def add_tile(name, column, row, material, uv_scale_x=1.0):
    """A square facing the camera (-Y) at grid cell (column, row)."""
    bpy.ops.mesh.primitive_plane_add(size=TILE_SIZE, location=(COLUMNS[column], 0, ROWS[row]),
                                     rotation=(math.radians(90), 0, 0))
    tile = bpy.context.active_object
    tile.name = name
    tile.data.name = name
    if uv_scale_x != 1.0:
        for loop in tile.data.uv_layers.active.data:
            loop.uv[0] *= uv_scale_x
    tile.data.materials.append(material)
    return tile


def load_image(path, filepath, source="FILE"):
    image = bpy.data.images.load(path, check_existing=False)
    image.name = os.path.basename(path)
    image.source = source
    image.filepath = filepath
    return image


def write_library(root, paths, absolute):
    """D/lib/props.blend: one object, its texture relative to the library (or absolute)."""
    clear_scene()
    image = load_image(paths["lib"], paths["lib"] if absolute else "//tex_lib/lib_tex.png")
    add_tile("Prop", 1, 1, emission_material("PropMaterial", image))
    path = os.path.join(root, "lib", "props.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path, compress=False, relative_remap=False)
    return path


def link_prop(scene, library, relative):
    with bpy.data.libraries.load(library, link=True, relative=relative) as (_, linked):
        linked.objects = ["Prop"]
    for obj in linked.objects:
        scene.collection.objects.link(obj)


def add_textures(paths, frame_start, frame_end):
    relative = load_image(paths["checker"], "//../tex/checker.png")
    add_tile("Relative", 0, 0, emission_material("RelativeTexture", relative))
    absolute = load_image(paths["abs"], paths["abs"])
    add_tile("Absolute", 1, 0, emission_material("AbsoluteTexture", absolute))

    first = os.path.join(os.path.dirname(paths["checker"]), "..", "seq", f"f_{frame_start:04d}.png")
    sequence = load_image(os.path.normpath(first), f"//../seq/f_{frame_start:04d}.png", "SEQUENCE")

    def frames(user):
        user.frame_start = frame_start
        user.frame_offset = frame_start - 1  # scene frame F shows file F
        user.frame_duration = frame_end - frame_start + 1
        user.use_auto_refresh = True
    add_tile("Sequence", 2, 0, emission_material("SequenceTexture", sequence, frames))

    udim = load_image(paths["udim1001"], "//../udim/tile.<UDIM>.png", "TILED")
    if udim.tiles.get(1002) is None:
        udim.tiles.new(tile_number=1002)
    udim.reload()
    # UVs 0..2 across: the left half samples tile 1001, the right half 1002.
    add_tile("Udim", 0, 1, emission_material("UdimTexture", udim), uv_scale_x=2.0)


def add_particles(scene, frame_start, frame_end):
    """Particles drawn as small white cubes, cached on disk once the file is saved."""
    bpy.ops.mesh.primitive_cube_add(size=0.25, location=(0, 5, -20))  # out of view
    dot = bpy.context.active_object
    dot.name = "Dot"
    white = bpy.data.materials.new("DotWhite")
    white.use_nodes = True
    nodes = white.node_tree.nodes
    nodes.remove(nodes["Principled BSDF"])
    emission = nodes.new("ShaderNodeEmission")
    white.node_tree.links.new(emission.outputs["Emission"], nodes["Material Output"].inputs["Surface"])
    dot.data.materials.append(white)

    bpy.ops.mesh.primitive_plane_add(size=1.6, location=(COLUMNS[2], -0.5, ROWS[1]),
                                     rotation=(math.radians(90), 0, 0))
    emitter = bpy.context.active_object
    emitter.name = "Emitter"
    emitter.show_instancer_for_render = False
    emitter.modifiers.new("Particles", "PARTICLE_SYSTEM")
    settings = emitter.particle_systems[0].settings
    settings.count = 12
    settings.frame_start = frame_start - 1
    settings.frame_end = frame_start - 1
    settings.lifetime = 1000
    settings.normal_factor = 0.0
    settings.factor_random = 3.0
    settings.effector_weights.gravity = 0.0
    settings.render_type = "OBJECT"
    settings.instance_object = dot
    settings.particle_size = 1.0
    cache = emitter.particle_systems[0].point_cache
    cache.frame_start = frame_start - 1
    cache.frame_end = frame_end
    return emitter


def bake_particles(emitter):
    system = emitter.particle_systems[0]
    system.point_cache.use_disk_cache = True
    override = {"scene": bpy.context.scene, "active_object": emitter,
                "point_cache": system.point_cache}
    with bpy.context.temp_override(**override):
        bpy.ops.ptcache.bake_all(bake=True)
    if not system.point_cache.is_baked:
        raise RuntimeError("the particle cache did not bake")
    # A render that simulated instead of reading the cache would now differ.
    system.settings.factor_random = 0.5


def main():
    args = parse_args()
    frame_start, frame_end = parse_frames(args.frames)
    root = os.path.abspath(args.dir)
    bpy.context.preferences.filepaths.save_version = 0  # no .blend1 backups
    paths = write_textures(root, frame_start, frame_end)
    library = write_library(root, paths, args.absolute_library)

    bpy.ops.wm.read_factory_settings(use_empty=False)
    bpy.context.preferences.filepaths.save_version = 0  # no main.blend1 backups
    scene = bpy.context.scene
    clear_scene()
    add_textures(paths, frame_start, frame_end)
    link_prop(scene, library, relative=not args.absolute_library)
    emitter = add_particles(scene, frame_start, frame_end)
    camera = add_camera(scene, (0, -10, 0), (math.radians(90), 0, 0))
    camera.data.type = "ORTHO"
    camera.data.ortho_scale = 8.0
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0, 0, 0, 1)
    configure_render(scene, frame_start=frame_start, frame_end=frame_end, width=args.width,
                     height=args.height, samples=args.samples)

    main_file = os.path.join(root, "shots", "main.blend")
    os.makedirs(os.path.dirname(main_file), exist_ok=True)
    # Saved first: a disk cache lives beside a saved file (//blendcache_main/).
    bpy.ops.wm.save_as_mainfile(filepath=main_file, compress=False, relative_remap=False)
    bake_particles(emitter)
    scene.frame_set(frame_start)
    bpy.ops.wm.save_as_mainfile(filepath=main_file, compress=False, relative_remap=False)
    print(f"make_project_scene: wrote {main_file}", flush=True)


run_generator(main, "make_project_scene")
