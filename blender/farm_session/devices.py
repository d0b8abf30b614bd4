"""The render device: Cycles on the CPU, or on the GPUs of one backend.

A worker's settings name the backend (render_device: CPU, CUDA, OPTIX, HIP, ONEAPI,
METAL) and optionally which of its GPUs to use (gpus: indices among that backend's
devices, in Blender's order). Cycles keeps these in the user preferences, not in the
.blend, so they are set in every session, after the scene is loaded: preferences first,
then the scene's own device. A backend Blender was not built with, or one that sees no
device (or not the GPU asked for), is an error naming what Blender does see.
"""

import bpy

BACKENDS = ("CPU", "CUDA", "OPTIX", "HIP", "ONEAPI", "METAL")


def cycles_preferences():
    return bpy.context.preferences.addons["cycles"].preferences


def devices_of(backend):
    """Blender's devices for a backend, as (index among that backend's, name); raises ValueError."""
    preferences = cycles_preferences()
    try:
        preferences.compute_device_type = backend
    except TypeError:
        raise ValueError(f"this Blender {bpy.app.version_string} was built without {backend} "
                         f"(render_device); its backends: {', '.join(supported_backends())}") from None
    preferences.get_devices()
    found = [device for device in preferences.devices if device.type == backend]
    return [(index, device.name) for index, device in enumerate(found)]


def supported_backends():
    """The backends this Blender was built with, CPU first."""
    import _cycles  # Cycles' compiled module: what the build has, whatever devices exist

    # Blender 3.x answers in this order: CUDA, OptiX, HIP, Metal, oneAPI.
    built = zip(("CUDA", "OPTIX", "HIP", "METAL", "ONEAPI"), _cycles.get_device_types())
    return ["CPU"] + [name for name, present in built if present]


def apply_device(scene, device):
    """Renders this scene on `device` ({"type", "gpus"}); returns what is used, read back."""
    backend = device.get("type", "CPU")
    wanted = device.get("gpus") or []
    if backend == "CPU":
        if scene.render.engine == "CYCLES":
            scene.cycles.device = "CPU"
        return {"type": "CPU", "devices": ["CPU"], "computeDeviceType": cycles_preferences().compute_device_type}
    available = devices_of(backend)
    if not available:
        seen = ", ".join(f"{d.type} {d.name!r}" for d in cycles_preferences().devices) or "none"
        raise ValueError(f"render_device is {backend}, but Blender sees no {backend} device "
                         f"(compute device type {cycles_preferences().compute_device_type}; devices it sees: {seen})")
    missing = [index for index in wanted if index >= len(available)]
    if missing:
        listed = "; ".join(f"{index}: {name}" for index, name in available)
        raise ValueError(f"gpus asks for {backend} device {missing[0]}, but Blender sees "
                         f"{len(available)}: {listed}")
    chosen = set(wanted) if wanted else {index for index, _ in available}
    backend_devices = [d for d in cycles_preferences().devices if d.type == backend]
    for d in cycles_preferences().devices:
        d.use = False  # the CPU and other backends' devices too: exactly the GPUs asked for
    for index, d in enumerate(backend_devices):
        d.use = index in chosen
    scene.cycles.device = "GPU"
    used = [d.name for d in cycles_preferences().devices if d.use]
    return {"type": backend, "devices": used, "computeDeviceType": cycles_preferences().compute_device_type}
