"""A scene as a PROJECT: its .blend and the files it uses, described as the CLI does.

This module must not import bpy: the manifest is built (files hashed) in the add-on's
submit thread, and it is unit tested with plain python3.

Which files: the farm's own dependency walk (blender/farm_session/dependencies.py,
shipped in the add-on zip as archenland_submit/dependencies.py by
scripts/build-addon.mjs) run in the artist's session on the UI thread, so the files
of unsaved changes count too. See dependencies_module() in __init__.py.

The manifest (src/protocol/projects.ts, built like src/cli/project.ts):
  root  the deepest folder holding the .blend's folder and every file's folder,
        as this machine writes it;
  main  the .blend's path relative to root, "/" between folders. The ORIGINAL
        .blend's path: the copy the add-on uploads keeps the original's "//"
        paths (saved with relative_remap off), so on the worker, laid out at
        `main` in the project's tree, they resolve as on the artist's machine;
  files [{path, sha256, size}], every file but the .blend, paths relative to root.
"""

import hashlib
import os

HASH_CHUNK = 1024 * 1024


class ProjectError(Exception):
    pass


def common_folder(folders):
    """The deepest folder holding every given folder (like the CLI's commonFolder)."""
    try:
        return os.path.commonpath([os.path.abspath(folder) for folder in folders])
    except ValueError:  # Windows: folders on several drives
        raise ProjectError(
            "The scene's files are on several drives, so they cannot be sent as one project: "
            "turn on \"Pack external files into the .blend\" in the Archenland panel, "
            "or move the files onto one drive"
        ) from None


def project_path(root, file):
    """A file's path in the project: relative to root, with "/" between folders."""
    return os.path.relpath(file, root).replace(os.sep, "/")


def sha256_of(path, chunk_size=HASH_CHUNK):
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for chunk in iter(lambda: source.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


class LocalProject:
    """The manifest to send, and where each of its files is on this machine."""

    def __init__(self, root, main, files):
        self.root = root
        self.main = main
        # [{"local": abs path, "path": project path, "sha256", "size"}]
        self.files = files

    @property
    def manifest(self):
        return {
            "root": self.root,
            "main": self.main,
            "files": [{"path": f["path"], "sha256": f["sha256"], "size": f["size"]} for f in self.files],
        }

    @property
    def total_bytes(self):
        return sum(f["size"] for f in self.files)


def build_project(blend_path, files, untitled_name="untitled.blend"):
    """The project of a .blend and the files it uses (absolute paths, as the walk lists them).

    blend_path is the artist's .blend (None for a file never saved: it is then placed at
    the root as `untitled_name`). Hashes every file: call it off the UI thread.
    Returns None when the scene uses no file (the .blend is then sent alone, as the CLI does).
    """
    blend = os.path.normpath(os.path.abspath(blend_path)) if blend_path else None
    locals_ = []
    seen = set()
    for path in files:
        local = os.path.normpath(os.path.abspath(path))
        if local == blend or local in seen:
            continue
        seen.add(local)
        locals_.append(local)
    if not locals_:
        return None
    folders = [os.path.dirname(local) for local in locals_]
    if blend:
        folders.append(os.path.dirname(blend))
    root = common_folder(folders)
    main = project_path(root, blend) if blend else untitled_name
    entries = []
    for local in sorted(locals_):
        try:
            size = os.path.getsize(local)
            digest = sha256_of(local)
        except OSError as error:
            raise ProjectError(f"Cannot read {local}, which the scene uses: {error.strerror or error}") from None
        entries.append({"local": local, "path": project_path(root, local), "sha256": digest, "size": size})
    return LocalProject(root, main, entries)


def files_to_upload(project, missing_hashes):
    """The files whose content the farm lacks, each content once."""
    lacking = set(missing_hashes)
    chosen = []
    for entry in project.files:
        if entry["sha256"] in lacking:
            lacking.discard(entry["sha256"])  # the same content under two paths: sent once
            chosen.append(entry)
    return chosen
