"""Tiles: one rectangle of the frame, rendered as a cropped border render.

A tile is a TileRegion from src/protocol/tiles.ts: pixels, origin at the TOP-LEFT,
extra keys such as index/cols/rows ignored. The saved image is exactly W x H.
"""

import bpy

TILE_INT_FIELDS = ("x", "y", "width", "height", "frameWidth", "frameHeight")
BORDER_SETTINGS = ("use_border", "use_crop_to_border",
                   "border_min_x", "border_max_x", "border_min_y", "border_max_y")


def parse_tile(tile):
    """The tile's pixel fields, checked; raises ValueError with the reason."""
    if not isinstance(tile, dict):
        raise ValueError(f"tile must be a JSON object, got {tile!r}")
    fields = {}
    for key in TILE_INT_FIELDS:
        value = tile.get(key)
        # JSON true/false arrive as bool, which Python counts as int.
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"tile.{key} must be an integer, got {value!r}")
        fields[key] = value
    x, y, width, height = fields["x"], fields["y"], fields["width"], fields["height"]
    frame_width, frame_height = fields["frameWidth"], fields["frameHeight"]
    if width < 1 or height < 1:
        raise ValueError(f"tile size must be at least 1x1, got {width}x{height}")
    if x < 0 or y < 0:
        raise ValueError(f"tile position must not be negative, got ({x}, {y})")
    if x + width > frame_width or y + height > frame_height:
        raise ValueError(f"tile {width}x{height} at ({x}, {y}) does not fit in "
                         f"the {frame_width}x{frame_height} frame")
    return fields


def effective_frame_size(render):
    # Blender scales by the percentage with integer division, as here.
    percentage = render.resolution_percentage
    return (render.resolution_x * percentage // 100,
            render.resolution_y * percentage // 100)


def check_frame_size(render, tile):
    # The server cut the frame for a size it read earlier (probe + overrides);
    # tiles of a frame of another size would not stitch together.
    width, height = effective_frame_size(render)
    if (width, height) != (tile["frameWidth"], tile["frameHeight"]):
        raise ValueError(
            f"tile is for a {tile['frameWidth']}x{tile['frameHeight']} frame but the "
            f"scene renders {width}x{height} (resolution {render.resolution_x}x"
            f"{render.resolution_y} at {render.resolution_percentage}%)")


def border_fraction(pixel, size):
    # Blender turns a border edge into a pixel as int(fraction * size),
    # truncating. Aiming a quarter pixel past the edge keeps float rounding
    # from truncating onto the pixel before it.
    return min(max((pixel + 0.25) / size, 0.0), 1.0)


def set_border(render, tile):
    frame_width, frame_height = tile["frameWidth"], tile["frameHeight"]
    left, right = tile["x"], tile["x"] + tile["width"]
    # The tile's y runs down from the top; Blender's border runs up from the bottom.
    bottom = frame_height - (tile["y"] + tile["height"])
    top = frame_height - tile["y"]
    render.use_border = True
    render.use_crop_to_border = True  # save just the tile, not a black frame around it
    render.border_min_x = border_fraction(left, frame_width)
    render.border_max_x = border_fraction(right, frame_width)
    render.border_min_y = border_fraction(bottom, frame_height)
    render.border_max_y = border_fraction(top, frame_height)


def read_border(render):
    return {name: getattr(render, name) for name in BORDER_SETTINGS}


def write_border(render, settings):
    for name, value in settings.items():
        setattr(render, name, value)


def check_image_size(path, tile):
    # Read the size back from the file itself: the stitcher trusts it, and a
    # border Blender rounded differently would leave a seam or an overlap.
    image = bpy.data.images.load(path, check_existing=False)
    try:
        width, height = image.size
    finally:
        bpy.data.images.remove(image)
    if (width, height) != (tile["width"], tile["height"]):
        raise RuntimeError(f"tile render saved a {width}x{height} image at {path}, "
                           f"expected {tile['width']}x{tile['height']}")
