"""Job overrides of the scene's render settings (engine, resolution, samples, format,
denoising).

They arrive as a JSON object: on the command line (--overrides JSON) of a cold
session, or in the "open" command of a pre-warmed one.
"""

# Names accepted by `blender -F` mapped to the Python enum names, so an
# override can use either spelling.
CLI_FORMAT_ALIASES = {
    "TGA": "TARGA",
    "RAWTGA": "TARGA_RAW",
    "JP2": "JPEG2000",
    "EXR": "OPEN_EXR",
    "MULTILAYER": "OPEN_EXR_MULTILAYER",
}
# Movie formats append frames to one file: meaningless for frame-at-a-time renders.
MOVIE_FORMATS = {"FFMPEG", "AVI_JPEG", "AVI_RAW", "AVIJPEG", "AVIRAW"}


def set_denoising(scene, enabled):
    """Cycles' render denoising, on the scene and on each view layer that has the flag."""
    scene.cycles.use_denoising = enabled
    for layer in scene.view_layers:
        settings = getattr(layer, "cycles", None)
        if settings is not None and hasattr(settings, "use_denoising"):
            settings.use_denoising = enabled


def apply_overrides(scene, overrides):
    """Apply each override that is present and not null; leave the rest alone."""
    render = scene.render

    engine = overrides.get("engine")
    if engine is not None:
        render.engine = engine  # first: the samples override depends on it

    percentage = overrides.get("resolutionPercentage")
    if percentage is not None:
        render.resolution_percentage = int(percentage)

    samples = overrides.get("samples")
    if samples is not None:
        if render.engine == "CYCLES":
            scene.cycles.samples = int(samples)
        elif render.engine == "BLENDER_EEVEE":
            scene.eevee.taa_render_samples = int(samples)
        # Workbench has no sample count; nothing to override.

    file_format = overrides.get("fileFormat")
    if file_format is not None:
        name = CLI_FORMAT_ALIASES.get(file_format.upper(), file_format.upper())
        if name in MOVIE_FORMATS:
            raise ValueError(f"file format {file_format} is a movie format; "
                             "frames must be rendered to image files")
        render.image_settings.file_format = name

    # false: render without the denoiser this Blender may lack (the probe's
    # DENOISER_UNAVAILABLE problem offers it as the fix "disable_denoising").
    denoising = overrides.get("denoising")
    if denoising is not None:
        set_denoising(scene, bool(denoising))
