"""The parts of blender/session.py, one concern per module.

Imported by the scripts Blender runs with --python (session.py, probe.py), which
put their own folder on sys.path first. Nothing here runs on import except what
events.py needs to flush C-level output.
"""
