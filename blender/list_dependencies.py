"""List the external files a .blend needs, for uploading its project.

Run on the SUBMITTING machine (scripts off, nothing of the user's preferences):
  blender -b --factory-startup FILE.blend -Y --python blender/list_dependencies.py \
      -- --output RESULT.json

Writes RESULT.json:
  {"blendFile": "/abs/FILE.blend",
   "savedWith": "3.4",            major.minor of the Blender that saved it
   "fileVersion": [3, 4, 6],      bpy.data.version: major, minor, file sub-version
   "files":   [{"path": "/abs/...", "kind": KIND, "owner": "<datablock name>"}],
   "missing": [{"path": "/abs/...", "ref": "//as/written", "kind": KIND, "owner": "...",
                "library": "lib.blend" (only for linked data: ref is relative to it)}]}
KIND is image, sequence, udim, library, movie, sound, font, volume, cache,
point_cache or bake. Sequences, UDIM tiles and cache folders are expanded into
every file that exists; linked libraries are followed recursively (Blender loads
them with the file, and their datablocks' "//" paths are relative to the library).
Packed data is inside the .blend and not listed; neither is the .blend itself.
Each file appears once. Exits 1 with a message on stderr if it cannot write.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpy  # noqa: E402

from farm_session.dependencies import dependencies  # noqa: E402
from farm_session.versions import file_version, saved_with  # noqa: E402


def output_path(argv):
    args = argv[argv.index("--") + 1:] if "--" in argv else []
    if "--output" not in args or args.index("--output") + 1 >= len(args):
        raise ValueError("usage: ... --python list_dependencies.py -- --output RESULT.json")
    return args[args.index("--output") + 1]


def main():
    try:
        output = output_path(sys.argv)
        if not bpy.data.filepath:
            raise ValueError("no .blend was loaded: give the file before --python")
        files, missing = dependencies()
        result = {
            "blendFile": os.path.abspath(bpy.data.filepath),
            "savedWith": saved_with(),
            "fileVersion": file_version(),
            "files": files,
            "missing": missing,
        }
        partial = output + ".partial"
        with open(partial, "w", encoding="utf-8") as stream:
            json.dump(result, stream, indent=1)
        os.replace(partial, output)
    except Exception as error:  # exit non-zero so the caller notices
        print(f"Error: list_dependencies.py: {error}", file=sys.stderr, flush=True)
        sys.exit(1)


main()
