"""Blender versions: the one that saved the loaded .blend and the one running."""

import bpy


def file_version():
    """bpy.data.version: (major, minor, file sub-version), e.g. [3, 4, 6]; not the patch release."""
    return list(bpy.data.version)


def saved_with():
    """"major.minor" of the Blender that saved the file: a .blend records no patch release."""
    major, minor, _ = bpy.data.version
    return f"{major}.{minor}"

