"""Compositor File Output nodes: written only inside the frame's output folder.

A File Output node writes to its base_path plus each slot's path on every render,
even with scripts off, so a .blend could write anywhere on the worker. Before
every render they are redirected into <output folder>/passes/.
"""

import hashlib
import os
import re

PASSES_FOLDER = "passes"
# Characters kept in a folder named after a node or node group; others become "_".
UNSAFE_FOLDER_CHARS = re.compile(r"[^A-Za-z0-9 ._-]")
MAX_FOLDER_NAME = 48


def folder_name(name):
    """A single, harmless path component for a Blender name, the same every time.

    Names that had to change get a short hash of the original, so two names
    that differ only in unsafe characters keep separate folders.
    """
    safe = UNSAFE_FOLDER_CHARS.sub("_", name)[:MAX_FOLDER_NAME].lstrip(". ")
    if safe == name:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return f"{safe}-{digest}" if safe else digest


def relative_parts(path):
    """The path's components without root, "." or "..": it cannot climb out."""
    return [part for part in re.split(r"[/\\]", path) if part not in ("", ".", "..")]


def file_name_prefix(path):
    """What follows the last separator ("" for a folder), never "." or ".."."""
    last = re.split(r"[/\\]", path)[-1]
    return "" if last in (".", "..") else last


def compositor_trees(scene):
    """The scene's compositor and the node groups it uses, with the folder of each."""
    if scene.node_tree is None:
        return []
    found = [(scene.node_tree, "compositor")]
    seen = {scene.node_tree}
    for tree, _ in found:  # grows while walking: groups inside groups
        for node in tree.nodes:
            group = node.node_tree if node.type == "GROUP" else None
            if group is not None and group not in seen:
                seen.add(group)
                found.append((group, "group-" + folder_name(group.name)))
    return found


def contain_file_outputs(scene, output_dir):
    """Point every File Output node at <output_dir>/passes/<tree>/<node>/.

    The scene chose base_path (absolute, "//" beside the .blend - the worker's
    blend cache, shared by jobs - or "..") and each slot's sub-path; Blender
    writes them on every render even with scripts off. The layout is fixed so
    the passes can be collected later; running it again changes nothing.
    """
    passes = os.path.join(output_dir, PASSES_FOLDER)
    for tree, tree_folder in compositor_trees(scene):
        for node in tree.nodes:
            if node.type != "OUTPUT_FILE":
                continue
            if tree.library is not None:
                raise RuntimeError(f"File Output node {node.name!r} is in node group "
                                   f"{tree.name!r}, linked from {tree.library.filepath!r}: "
                                   "it cannot be redirected into the job's folder")
            node_dir = os.path.join(passes, tree_folder, folder_name(node.name))
            if node.format.file_format == "OPEN_EXR_MULTILAYER":
                # One file per frame: base_path is a folder plus the file names' prefix.
                node.base_path = os.path.join(node_dir, file_name_prefix(node.base_path))
            else:
                node.base_path = node_dir + os.sep
            for slot in node.file_slots:
                slot.path = "/".join(relative_parts(slot.path))
