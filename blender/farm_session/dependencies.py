"""The external files a loaded .blend reads, found by walking its datablocks.

One walk serves three users: blender/list_dependencies.py (on the submitting
machine: which files make up the project), project_paths.remap_project (on the
worker: point absolute paths into the project's tree) and missing_files() (the
probe's MISSING_FILE problems).

Each reference is one path as the .blend stores it ("ref"), with how Blender
turns it into files on disk ("mode"):
  file      one file;
  sequence  the last run of digits in the file name is the frame number: every
            file with another number there is a frame (image, movie clip and
            volume sequences);
  udim      "<UDIM>" (1001, 1002...) or "<UVTILE>" (u1_v1...) in the name: every tile;
  folder    a cache or bake folder: every file in it, sub-folders included.
"//" paths are relative to the .blend that holds the datablock: the main file,
or for linked data its library (whose own path Blender keeps relative to the
main file or absolute). Packed data is inside the .blend and is skipped.

bpy.utils.blend_paths lists the same paths but neither expands sequences, tiles
and cache folders nor says which datablock owns a path, so the walk is our own.
"""

import glob
import os
import re

import bpy

# Digits of a frame number, found the way Blender's BLI_path_sequence_decode does:
# the last run of digits in the file name, before its last dot.
UDIM_TOKENS = {"<UDIM>": (r"\d{4}", "[0-9][0-9][0-9][0-9]"),
               "<UVTILE>": (r"u\d+_v\d+", "u*_v*")}
POINT_CACHE_FOLDER_PREFIX = "blendcache_"


class Reference:
    """One path stored in the .blend, and how to change it."""

    __slots__ = ("kind", "owner", "ref", "library", "mode", "setter", "required")

    def __init__(self, kind, owner, ref, library, mode="file", setter=None, required=True):
        self.kind = kind
        self.owner = owner
        self.ref = ref
        self.library = library  # the bpy Library holding the datablock, or None
        self.mode = mode
        self.setter = setter    # callable(new_ref), or None when it cannot be changed
        # False for caches that may legitimately be absent (not baked: computed on the fly).
        self.required = required

    @property
    def path(self):
        return resolve(self.ref, self.library)

    def files(self):
        return expand(self.path, self.mode)


def is_relative(ref):
    """A Blender "//" path (relative to its .blend), not a UNC path written with slashes."""
    return ref.startswith("//")


def library_path(library):
    """A library's absolute path: Blender keeps it relative to the main file or absolute."""
    return resolve(library.filepath)


def resolve(ref, library=None):
    """The absolute path of a reference, "//" resolved against the .blend holding it."""
    if is_relative(ref):
        rest = ref[2:]
        if os.sep == "/":
            # A file saved on Windows writes "//tex\\a.png"; Blender reads it with "/" here.
            rest = rest.replace("\\", "/")
        base = library_path(library) if library is not None else bpy.data.filepath
        return os.path.normpath(os.path.join(os.path.dirname(base), rest))
    return os.path.normpath(ref) if ref else ref


def sequence_parts(path):
    """(head, digits, tail) of a sequence file name, as Blender splits it; digits may be ""."""
    folder, name = os.path.split(path)
    stem_end = name.rfind(".")
    if stem_end <= 0:
        stem_end = len(name)
    match = re.search(r"(\d+)(\D*)$", name[:stem_end])
    if match is None:
        return os.path.join(folder, name), "", ""
    head = os.path.join(folder, name[:match.start(1)])
    return head, match.group(1), match.group(2) + name[stem_end:]


def expand_sequence(path):
    head, digits, tail = sequence_parts(path)
    if not digits:
        return [path] if os.path.isfile(path) else []
    pattern = re.compile(re.escape(os.path.basename(head)) + r"\d+" + re.escape(tail) + r"\Z")
    candidates = glob.glob(glob.escape(head) + "*" + glob.escape(tail))
    return sorted(p for p in candidates
                  if pattern.match(os.path.basename(p)) and os.path.isfile(p))


def expand_udim(path):
    regex = re.escape(path)
    pattern = glob.escape(path)
    for token, (token_regex, token_glob) in UDIM_TOKENS.items():
        regex = regex.replace(re.escape(token), token_regex)
        pattern = pattern.replace(token, token_glob)
    if pattern == glob.escape(path):  # no token: a plain file
        return [path] if os.path.isfile(path) else []
    compiled = re.compile(regex + r"\Z")
    return sorted(p for p in glob.glob(pattern) if compiled.match(p) and os.path.isfile(p))


def expand_folder(path):
    found = []
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        found.extend(os.path.join(folder, name) for name in sorted(names))
    return found


def expand(path, mode):
    """The files that exist for one reference; [] means it is missing."""
    if not path:
        return []
    if mode == "sequence":
        return expand_sequence(path)
    if mode == "udim":
        return expand_udim(path)
    if mode == "folder":
        return expand_folder(path)
    return [path] if os.path.isfile(path) else []


def setter_for(datablock, attribute="filepath"):
    def set_path(value):
        setattr(datablock, attribute, value)
    return set_path


def is_packed(datablock):
    return getattr(datablock, "packed_file", None) is not None


def image_references():
    for image in bpy.data.images:
        if image.source not in ("FILE", "SEQUENCE", "TILED", "MOVIE") or not image.filepath:
            continue
        if is_packed(image) or len(getattr(image, "packed_files", ())) > 0:
            continue
        kind, mode = {"SEQUENCE": ("sequence", "sequence"), "TILED": ("udim", "udim"),
                      "MOVIE": ("movie", "file")}.get(image.source, ("image", "file"))
        yield Reference(kind, image.name, image.filepath, image.library, mode, setter_for(image))


def library_references():
    for library in bpy.data.libraries:
        if is_packed(library) or not library.filepath:
            continue
        # Not resolved against a parent library: Blender rewrites an indirect
        # library's path relative to the main file when it loads it.
        yield Reference("library", library.name, library.filepath, None, "file",
                        setter_for(library))


def simple_references():
    """Clips, sounds, fonts, volumes and cache files: one path each."""
    for clip in bpy.data.movieclips:
        mode = "sequence" if clip.source == "SEQUENCE" else "file"
        yield Reference("sequence" if mode == "sequence" else "movie", clip.name, clip.filepath,
                        clip.library, mode, setter_for(clip))
    for sound in bpy.data.sounds:
        if not is_packed(sound):
            yield Reference("sound", sound.name, sound.filepath, sound.library, "file",
                            setter_for(sound))
    for font in bpy.data.fonts:
        if not is_packed(font) and font.filepath and font.filepath != "<builtin>":
            yield Reference("font", font.name, font.filepath, font.library, "file",
                            setter_for(font))
    for volume in bpy.data.volumes:
        if not is_packed(volume):
            yield Reference("volume", volume.name, volume.filepath, volume.library,
                            "sequence" if volume.is_sequence else "file", setter_for(volume))
    for cache in bpy.data.cache_files:
        yield Reference("cache", cache.name, cache.filepath, cache.library,
                        "sequence" if cache.is_sequence else "file", setter_for(cache))
        for layer in getattr(cache, "layers", ()):
            yield Reference("cache", cache.name, layer.filepath, cache.library, "file",
                            setter_for(layer))


def point_cache_reference(cache, owner, library):
    """A point cache kept on disk: its folder, baked or written as it simulated."""
    if cache.use_external:
        return Reference("point_cache", owner, cache.filepath, library, "folder",
                         setter_for(cache), required=cache.is_baked)
    if not cache.use_disk_cache:
        return None  # in memory: saved inside the .blend when baked
    blend = library_path(library) if library is not None else bpy.data.filepath
    name = os.path.basename(blend)
    if len(name) > 6:
        name = name[:-6]  # Blender cuts ".blend" off by length
    # Fixed by the .blend's own name: nothing to rewrite.
    return Reference("point_cache", owner, f"//{POINT_CACHE_FOLDER_PREFIX}{name}/", library,
                     "folder", None, required=cache.is_baked)


def object_point_caches(obj):
    for system in obj.particle_systems:
        yield system.point_cache, f"{obj.name}/{system.name}"
    for modifier in obj.modifiers:
        label = f"{obj.name}/{modifier.name}"
        if modifier.type in ("CLOTH", "SOFT_BODY"):
            yield modifier.point_cache, label
        elif modifier.type == "DYNAMIC_PAINT" and modifier.canvas_settings is not None:
            for surface in modifier.canvas_settings.canvas_surfaces:
                yield surface.point_cache, f"{label}/{surface.name}"


def bake_references():
    """Point caches, fluid caches, ocean caches and mesh caches of every object."""
    for obj in bpy.data.objects:
        for cache, owner in object_point_caches(obj):
            if cache is None:
                continue
            reference = point_cache_reference(cache, owner, obj.library)
            if reference is not None:
                yield reference
        for modifier in obj.modifiers:
            owner = f"{obj.name}/{modifier.name}"
            if modifier.type == "FLUID" and modifier.fluid_type == "DOMAIN":
                settings = modifier.domain_settings
                # A "Replay" cache is simulated again as frames are rendered: not needed.
                if settings.cache_type in ("MODULAR", "ALL"):
                    yield Reference("bake", owner, settings.cache_directory, obj.library,
                                    "folder", setter_for(settings, "cache_directory"),
                                    required=settings.has_cache_baked_any)
            elif modifier.type == "OCEAN" and modifier.is_cached:
                yield Reference("bake", owner, modifier.filepath, obj.library, "folder",
                                setter_for(modifier))
            elif modifier.type == "MESH_CACHE" and modifier.filepath:
                yield Reference("cache", owner, modifier.filepath, obj.library, "file",
                                setter_for(modifier))


def strip_references():
    """Image and movie strips of the video sequencer (sounds are sound datablocks)."""
    for scene in bpy.data.scenes:
        editor = scene.sequence_editor
        if editor is None:
            continue
        for strip in editor.sequences_all:
            owner = f"{scene.name}/{strip.name}"
            if strip.type == "IMAGE":
                for element in strip.elements:
                    yield Reference("image", owner, strip.directory + element.filename,
                                    scene.library, "file", strip_directory_setter(strip))
            elif strip.type == "MOVIE":
                yield Reference("movie", owner, strip.filepath, scene.library, "file",
                                setter_for(strip))


def strip_directory_setter(strip):
    def set_path(value):
        strip.directory = os.path.join(os.path.dirname(value), "")
    return set_path


def references():
    """Every external path the loaded .blend holds, its libraries' data included."""
    for group in (image_references, library_references, simple_references,
                  bake_references, strip_references):
        for reference in group():
            if reference.ref:
                yield reference


def missing_entry(reference):
    entry = {"path": reference.path, "ref": reference.ref, "kind": reference.kind,
             "owner": reference.owner}
    if reference.library is not None:
        entry["library"] = reference.library.name  # "ref" is relative to that library
    return entry


def missing_files():
    """References with no file on disk now: [{ref, path, kind, owner, library?}], each once.

    A sequence or tile set counts as missing when none of its files exists; a
    cache folder only when Blender needs it (baked) and it holds no file.
    """
    missing = {}
    for reference in references():
        if reference.required and not reference.files():
            missing.setdefault(reference.path, missing_entry(reference))
    return list(missing.values())


def dependencies():
    """(files, missing): every file the .blend reads, each once, and what is absent."""
    files = {}
    missing = {}
    main_file = os.path.normpath(bpy.data.filepath)
    for reference in references():
        found = reference.files()
        for path in found:
            if path != main_file:
                files.setdefault(path, {"path": path, "kind": reference.kind,
                                        "owner": reference.owner})
        if not found and reference.required:
            missing.setdefault(reference.path, missing_entry(reference))
    return list(files.values()), list(missing.values())
