"""Runs INSIDE a background Blender on the temporary copy of the artist's file.

Started by packing.py as:
  blender -b -Y --factory-startup COPY.blend --python pack_in_blender.py -- --result R.json

Packs linked libraries and external files (images, sounds, fonts, volumes) into
the copy and saves it in place, so workers that never saw those files render
the same pixels. What cannot be packed (movies, image sequences, movie clips,
Alembic/USD caches) or is missing on this machine is reported as a warning.
Writes {"saved": bool, "packed": [...], "warnings": [...], "error": str|null} to R.json.
Never imported by the add-on itself (only run as a script).
"""

import argparse
import json
import os
import sys
import traceback

import bpy


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    parser = argparse.ArgumentParser(prog="pack_in_blender.py")
    parser.add_argument("--result", required=True)
    return parser.parse_args(argv)


def file_of(block):
    if not block.filepath:
        return ""
    # The copy sits in a temp folder: show "/proj/tex/a.png", not "/tmp/x/../../proj/tex/a.png".
    return os.path.normpath(bpy.path.abspath(block.filepath, library=block.library))


def is_packed(block):
    if getattr(block, "packed_file", None) is not None:
        return True
    packed_files = getattr(block, "packed_files", None)  # images (UDIM tiles)
    return bool(packed_files and len(packed_files))


def external_blocks():
    """(kind, block) for every data-block that refers to a file on disk."""
    for image in bpy.data.images:
        if image.source in {"FILE", "TILED", "SEQUENCE", "MOVIE"} and image.filepath:
            yield "image", image
    for sound in bpy.data.sounds:
        yield "sound", sound
    for font in bpy.data.fonts:
        if font.filepath != "<builtin>":
            yield "font", font
    for volume in bpy.data.volumes:
        if volume.filepath:
            yield "volume", volume


def unpacked_warnings():
    warnings = []
    for kind, block in external_blocks():
        if block.users == 0 or is_packed(block):
            continue  # orphans are not saved; packed ones travel with the file
        path = file_of(block)
        if kind == "image" and block.source in {"SEQUENCE", "MOVIE"}:
            warnings.append(f'{kind} "{block.name}" is a movie or image sequence, which cannot be packed: '
                            f"workers will not have {path}")
        elif not os.path.exists(path):
            warnings.append(f'{kind} "{block.name}": file not found on this computer ({path}); '
                            "it will render as missing on the farm too")
        else:
            warnings.append(f'{kind} "{block.name}" could not be packed: workers will not have {path}')
    for clip in bpy.data.movieclips:
        if clip.users:
            warnings.append(f'movie clip "{clip.name}" cannot be packed: workers will not have {file_of(clip)}')
    for cache in bpy.data.cache_files:
        if cache.users:
            warnings.append(f'cache file "{cache.name}" (Alembic/USD) cannot be packed: '
                            f"workers will not have {file_of(cache)}")
    for library in bpy.data.libraries:
        if library.packed_file is None:
            warnings.append(f'linked library "{library.name}" could not be packed: '
                            f"workers will not have {file_of(library)}")
    return warnings


def main():
    args = parse_args()
    result = {"saved": False, "packed": [], "warnings": [], "error": None}
    try:
        to_pack = {(kind, block.name_full) for kind, block in external_blocks()
                   if block.users and not is_packed(block)}
        libraries = [lib.name_full for lib in bpy.data.libraries if lib.packed_file is None]
        if bpy.data.libraries:
            try:
                bpy.ops.file.pack_libraries()
            except RuntimeError as error:  # reported per library below
                print(f"archenland pack: {error}", flush=True)
        try:
            bpy.ops.file.pack_all()
        except RuntimeError as error:
            # pack_all raises for the first file it cannot read but packs the others;
            # what is still unpacked is listed by unpacked_warnings().
            print(f"archenland pack: {error}", flush=True)
        result["warnings"] = unpacked_warnings()
        result["packed"] = [f'{kind} "{block.name_full}"' for kind, block in external_blocks()
                            if (kind, block.name_full) in to_pack and is_packed(block)]
        result["packed"] += [f'linked library "{name}"' for name in libraries
                             if bpy.data.libraries[name].packed_file is not None]
        # No "copy.blend1" backup next to the copy: it is a throwaway file.
        bpy.context.preferences.filepaths.save_version = 0
        bpy.ops.wm.save_mainfile()
        result["saved"] = True
    except Exception as error:
        traceback.print_exc()
        result["error"] = str(error).strip()
    with open(args.result, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    print(f"archenland pack: {json.dumps(result)}", flush=True)


main()
