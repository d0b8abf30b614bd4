"""A project laid out on the worker: absolute paths pointed into its tree.

The farm copies (or links) every file of a project into the folder `tree` at its
path relative to the project's `root`: the submitting machine's common ancestor
of the .blend and its files, written as that machine wrote it (POSIX or Windows).
"//" paths then resolve by themselves; remap_project rewrites each absolute path
under `root` to the same place under `tree`. Absolute paths elsewhere are left
alone (missing_files() reports them if they do not exist here).

Paths are compared normalised: backslashes become "/", "." and ".." are folded,
and a Windows drive letter matches in either case (the rest of the path does
not). Libraries are remapped and reloaded first; then every other path, linked
datablocks' included (changed in memory only: the library files are untouched).
"""

import os
import posixpath
import re

DRIVE = re.compile(r"^[A-Za-z]:")


def check_project(project):
    """None, or {"root": str, "tree": str} checked; raises ValueError."""
    if project is None:
        return None
    if not isinstance(project, dict):
        raise ValueError("project must be a JSON object or null")
    for key in ("root", "tree"):
        if not isinstance(project.get(key), str) or not project[key]:
            raise ValueError(f"project.{key} must be a non-empty path")
    if not os.path.isabs(project["tree"]):
        raise ValueError("project.tree must be an absolute path")
    return project


def normalise(path):
    """Slashes only, "." and ".." folded, drive letter in lower case."""
    text = path.replace("\\", "/")
    if DRIVE.match(text):
        text = text[0].lower() + text[1:]
    prefix = "//" if text.startswith("//") else ""  # a UNC share stays one
    folded = posixpath.normpath(text)
    return prefix + folded.lstrip("/") if prefix else folded


def relative_to_root(path, root):
    """The parts of `path` below `root`, or None when it is not under it."""
    path, root = normalise(path), normalise(root).rstrip("/")
    if path == root or not root:
        return None
    if not path.startswith(root + "/"):
        return None
    parts = path[len(root) + 1:].split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    return parts


def remap_project(root, tree):
    """Point every absolute path under `root` into `tree`; return [(old, new)] changed.

    Libraries first: reloading one reads its datablocks again, with the paths its
    file holds, so theirs are remapped after (in memory; Blender lets linked
    datablocks' file paths change).
    """
    # Only inside Blender; the path helpers above are plain Python (tested without it).
    import bpy

    from .dependencies import library_references, references

    changed = remap(library_references(), root, tree)
    for old, new in changed:
        for library in bpy.data.libraries:
            if library.filepath == new:
                library.reload()
    others = (reference for reference in references() if reference.kind != "library")
    return changed + remap(others, root, tree)


def remap(references, root, tree):
    from .dependencies import is_relative

    changed = []
    for reference in list(references):
        if is_relative(reference.ref) or reference.setter is None:
            continue
        parts = relative_to_root(reference.ref, root)
        if parts is None:
            continue
        new = os.path.join(tree, *parts)
        if reference.mode == "folder":
            new = os.path.join(new, "")
        try:
            reference.setter(new)
        except (AttributeError, TypeError, RuntimeError, ValueError):
            continue  # a path Blender refuses to change: reported missing if it is
        changed.append((reference.ref, new))
    return changed
