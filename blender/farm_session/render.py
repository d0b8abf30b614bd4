"""Rendering one frame, or one tile of it, to an image file."""

import os

import bpy

from .file_outputs import contain_file_outputs
from .views import gather_views, make_suffixes_safe, view_files
from .tiles import check_frame_size, check_image_size, read_border, set_border, write_border


def render_to_file(scene, frame, output):
    scene.frame_set(frame)
    # Expand "#" (and the extension) the way `blender -o PATTERN -f N` does.
    # A still render with write_still=True does NOT expand "#": given the
    # pattern itself it writes a file literally named "frame_####.png".
    scene.render.filepath = output
    # The worker accepts only "<pattern with # expanded><image extension>".
    scene.render.use_file_extension = True
    make_suffixes_safe(scene)
    path = scene.render.frame_path(frame=frame)
    views = view_files(scene, frame)  # from the pattern, before filepath is the expanded path
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    gather_views(views, path)
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
