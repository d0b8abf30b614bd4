"""Stereo and multi-view renders: every view comes back.

With multiview on and views saved as individual files (Output > Views Format:
Individual), Blender writes one file per view ("frame_0001_L.png",
"frame_0001_R.png") and none at the frame's own path. The first view becomes the
frame's image (thumbnails, video) and every view is kept among the frame's passes
under views/, so both eyes reach the server and frames.zip. Views saved as one
image (Stereo 3D: side by side, anaglyph, ...) need nothing: that image is the frame.

A view's file suffix comes from the .blend and is pasted into the file name, so a
suffix holding "/" or ".." could place a file outside the output folder: before each
render every suffix is made a harmless file-name part, each one different.
"""

import os
import re

from .file_outputs import PASSES_FOLDER

VIEWS_FOLDER = "views"
SAFE_SUFFIX = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def individual_views(scene):
    """The views saved to files of their own, in order; empty when there is one image per frame."""
    render = scene.render
    if not render.use_multiview or render.image_settings.views_format != "INDIVIDUAL":
        return []
    if render.views_format == "STEREO_3D":
        return [render.views[name] for name in ("left", "right") if name in render.views]
    return [view for view in render.views if view.use]


def make_suffixes_safe(scene):
    """Replace every unsafe or repeated view suffix by "_view<N>"."""
    taken = set()
    for index, view in enumerate(individual_views(scene)):
        suffix = view.file_suffix
        if not SAFE_SUFFIX.match(suffix) or suffix.lower() in taken:
            suffix = f"_view{index}"
            view.file_suffix = suffix
        taken.add(suffix.lower())


def view_files(scene, frame):
    """The files a render of `frame` writes, one per view; empty for one image per frame.

    Asked while render.filepath is still the pattern ("frame_####"): Blender expands it
    and puts each view's suffix before the extension.
    """
    return [scene.render.frame_path(frame=frame, view=view.name) for view in individual_views(scene)]


def gather_views(files, path):
    """After a render: the first view's file becomes `path`, every view goes into the passes."""
    if not files:
        return
    missing = [os.path.basename(file) for file in files if not os.path.isfile(file)]
    if missing:
        raise RuntimeError(f"render finished but these views were not written: {', '.join(missing)}")
    folder = os.path.join(os.path.dirname(path), PASSES_FOLDER, VIEWS_FOLDER)
    os.makedirs(folder, exist_ok=True)
    with open(files[0], "rb") as first, open(path, "wb") as image:
        image.write(first.read())
    for file in files:
        os.replace(file, os.path.join(folder, os.path.basename(file)))
