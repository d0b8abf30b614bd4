"""Building blocks shared by the scripts that generate Archenland's test scenes.

Run inside Blender; the generator scripts put this folder on sys.path to import it.
"""

import sys

import bpy


def parse_frames(text):
    start, _, end = text.partition("-")
    start = int(start)
    end = int(end) if end else start
    if end < start:
        raise ValueError(f"frame range {text!r} ends before it starts")
    return start, end


def clear_scene():
    # --factory-startup brings a cube, a light and a camera; start from nothing
    # so the scene is fully described by the generator script.
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj, do_unlink=True)


def make_material(name, rgba):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = rgba
    mat.diffuse_color = rgba  # what Workbench shows
    return mat


# Bits per channel when the caller does not say: Blender's choices differ per format.
DEFAULT_COLOR_DEPTH = {"PNG": "8", "OPEN_EXR": "32", "OPEN_EXR_MULTILAYER": "32"}


def configure_render(scene, *, frame_start, frame_end, width, height, samples,
                     engine="CYCLES", fps=24, denoise=False, file_format="PNG",
                     color_depth=None):
    """Deterministic output: fixed seed and sample count, RGBA (8-bit PNG unless
    asked otherwise), CPU Cycles."""
    scene.frame_start = frame_start
    scene.frame_end = frame_end
    scene.frame_step = 1
    scene.frame_current = frame_start
    scene.render.fps = fps
    scene.render.fps_base = 1.0

    render = scene.render
    render.engine = engine
    render.resolution_x = width
    render.resolution_y = height
    render.resolution_percentage = 100
    settings = render.image_settings
    settings.file_format = file_format
    settings.color_mode = "RGBA"
    # EXR has no 8-bit and PNG no 32-bit: Blender raises on such a pair.
    settings.color_depth = color_depth or DEFAULT_COLOR_DEPTH[file_format]
    if file_format == "PNG":
        settings.compression = 15

    cycles = scene.cycles
    cycles.device = "CPU"
    cycles.samples = samples
    cycles.use_denoising = denoise
    # A fixed sample count makes progress lines predictable (a/N up to N).
    cycles.use_adaptive_sampling = False
    cycles.seed = 0
    cycles.use_animated_seed = False

    scene.eevee.taa_render_samples = samples


def make_linear(obj):
    """Constant speed between keyframes, so each frame differs from the next."""
    for fcurve in obj.animation_data.action.fcurves:
        for key in fcurve.keyframe_points:
            key.interpolation = "LINEAR"


def add_sun(location, rotation, energy):
    bpy.ops.object.light_add(type="SUN", location=location)
    sun = bpy.context.active_object
    sun.name = "Sun"
    sun.data.energy = energy
    sun.rotation_euler = rotation
    return sun


def add_camera(scene, location, rotation):
    bpy.ops.object.camera_add(location=location)
    camera = bpy.context.active_object
    camera.name = "Camera"
    camera.rotation_euler = rotation
    scene.camera = camera
    return camera


def write_png(path, width, height, pixel):
    """Write an RGBA PNG whose pixel (x, y) (from the bottom-left) is pixel(x, y) -> (r, g, b, a)."""
    image = bpy.data.images.new("scene_kit_png", width, height, alpha=True)
    values = []
    for y in range(height):
        for x in range(width):
            values.extend(pixel(x, y))
    image.pixels.foreach_set(values)
    image.filepath_raw = path
    image.file_format = "PNG"
    image.save()
    bpy.data.images.remove(image)


def emission_material(name, image, image_user=None):
    """A material showing `image` as it is: emission, "Closest" so texels stay crisp.

    image_user: a function given the Image Texture node's image_user to set
    (frames of a sequence).
    """
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    links = mat.node_tree.links
    for node in list(nodes):
        nodes.remove(node)
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.interpolation = "Closest"
    if image_user is not None:
        image_user(tex.image_user)
    emission = nodes.new("ShaderNodeEmission")
    emission.inputs["Strength"].default_value = 1.0
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(tex.outputs["Color"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    return mat


def fresh_compositor(scene):
    """Turn the compositor on with nothing but a Render Layers and a Composite node.

    Returns (tree, layers, composite); the caller links them as it needs.
    """
    scene.use_nodes = True
    scene.render.use_compositing = True
    tree = scene.node_tree
    tree.nodes.clear()
    layers = tree.nodes.new("CompositorNodeRLayers")
    composite = tree.nodes.new("CompositorNodeComposite")
    return tree, layers, composite


def run_generator(main, name):
    """Run a generator's main(); any error exits 1 with it, so callers notice a broken scene."""
    try:
        main()
    except Exception as error:
        print(f"{name}: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
