"""Check that this Blender can render on a worker's render device, before it takes work.

Run by the worker at start (src/worker/blender/devices.ts), with no scene and factory
settings, so nothing here comes from a .blend:
  blender -b --factory-startup --python blender/check_device.py -- \
      --device '{"type": "CUDA", "gpus": [1]}' --output RESULT.json
Writes {"ok": true, "device": {"type", "devices": [names], "computeDeviceType"}} or
{"ok": false, "error": "<what Blender sees instead>"} (farm_session/devices.py).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpy  # noqa: E402

from farm_session.devices import apply_device  # noqa: E402


def main():
    args = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    device = json.loads(args[args.index("--device") + 1])
    output = args[args.index("--output") + 1]
    bpy.context.scene.render.engine = "CYCLES"
    try:
        result = {"ok": True, "device": apply_device(bpy.context.scene, device)}
    except ValueError as error:
        result = {"ok": False, "error": str(error)}
    with open(output, "w", encoding="utf-8") as stream:
        json.dump(result, stream)


main()
