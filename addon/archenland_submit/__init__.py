"""Archenland: submit the open .blend to an Archenland render farm with one click.

Properties > Render > Archenland. See docs/addon.md in the Archenland repository.

What "Submit to Farm" does:
  1. On the UI thread: save_as_mainfile(copy=True) writes the CURRENT state (unsaved
     changes included) to a temp folder. The open file, its path, its "modified"
     flag and the undo history are untouched.
     As a PROJECT (the default): the copy keeps the original's "//" paths
     (relative_remap off), and the farm's own dependency walk (dependencies.py, the
     same code as blender/farm_session/dependencies.py, which scripts/build-addon.mjs
     copies into the zip) lists the files this session uses.
     PACKED ("Pack external files into the .blend"): relative paths are remapped so
     they still point at the artist's files from the temp folder.
  2. In a background thread: check the farm address and token (GET /api/workers), so a
     typo fails in a second rather than after hashing or packing gigabytes. Then
     as a project: hash the files, POST the manifest (project.py: root, main, files,
     as `archenland submit` builds it), upload only the files the farm lacks
     (PUT /api/files/{sha256}), and submit the copy with the field "project", laid
     out on the worker as the original .blend so its "//" paths resolve;
     packed: pack external files into the copy in a separate background Blender
     (packing.py explains why not in this session).
     Either way the copy is streamed to POST /api/jobs (multipart, Content-Length,
     never read into memory whole); the temp folder is deleted.
  3. The panel shows the job id, a link to the job's web page, and its state and
     frames done/total, polled every 2 s with bpy.app.timers (requests in a thread).

From the UI the operator runs modal, so Blender stays responsive during the upload.
Called from a script (bpy.ops.archenland.submit(), e.g. in `blender -b`) it runs the
same thread but waits for it, so the script knows the outcome when the call returns.
"""

bl_info = {
    "name": "Archenland Render Farm",
    "author": "Archenland",
    "version": (0, 1, 0),
    "blender": (3, 0, 0),
    "location": "Properties > Render > Archenland",
    "description": "Submit the current file to an Archenland render farm and follow its progress",
    "category": "Render",
}

if "farm_client" in locals():  # "Reload Scripts" (F3 > Reload Scripts) re-imports the modules
    import importlib

    farm_client = importlib.reload(farm_client)  # noqa: F821
    packing = importlib.reload(packing)  # noqa: F821
    project = importlib.reload(project)  # noqa: F821
    submission = importlib.reload(submission)  # noqa: F821
else:
    from . import farm_client, packing, project, submission

import importlib.util
import os
import shutil
import tempfile
import textwrap
import traceback

import bpy
from bpy.props import BoolProperty, IntProperty, PointerProperty, StringProperty

POLL_INTERVAL_S = 2.0
MODAL_TICK_S = 0.25
DEFAULT_ADDRESS = "http://127.0.0.1:8080"


class _State:
    """What the panel shows; lives as long as the add-on, across opened files."""

    def __init__(self):
        self.task = None  # the latest submission.Submission
        self.watcher = None  # submission.JobWatcher of the latest submitted job


state = _State()


def _log(message):
    print(message, flush=True)


def addon_prefs(context=None):
    addon = (context or bpy.context).preferences.addons.get(__name__)
    return addon.preferences if addon else None


_dependencies = None


def dependencies_module():
    """The farm's dependency walk: archenland_submit/dependencies.py in the built zip
    (scripts/build-addon.mjs copies blender/farm_session/dependencies.py there), or,
    run from the repository's source folder, that file itself."""
    global _dependencies
    if _dependencies is None:
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.path.join(here, "dependencies.py")
        if not os.path.isfile(path):
            path = os.path.join(here, os.pardir, os.pardir, "blender", "farm_session", "dependencies.py")
        spec = importlib.util.spec_from_file_location(__name__ + ".dependencies", path)
        if spec is None or not os.path.isfile(path):
            raise ImportError("the add-on lacks dependencies.py: build it with scripts/build-addon.mjs")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _dependencies = module
    return _dependencies


def _redraw_panels():
    wm = bpy.context.window_manager
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type == "PROPERTIES":
                area.tag_redraw()


# ---- properties -------------------------------------------------------------------


class ArchenlandPreferences(bpy.types.AddonPreferences):
    # Address and token live in the add-on's preferences (saved with Blender's user
    # preferences), not in .blend files: they belong to the machine, not the scene,
    # and a token must not travel inside files sent to others.
    bl_idname = __name__

    address: StringProperty(
        name="Farm Address",
        description="The farm server's web address, as printed by `archenland start`",
        default=DEFAULT_ADDRESS,
    )
    token: StringProperty(
        name="Token",
        description="The farm token (printed when the server first starts; kept in archenland-data/farm-token)",
        subtype="PASSWORD",
        default="",
    )
    tls_ca: StringProperty(
        name="CA File",
        description="For an https:// farm whose certificate is self-signed or from a private authority: "
                    "the PEM file of the authority that signed it (or the certificate itself)",
        subtype="FILE_PATH",
        default="",
    )
    tls_fingerprint: StringProperty(
        name="Certificate Fingerprint",
        description="For an https:// farm: accept exactly the certificate with this SHA-256 fingerprint, "
                    "whoever signed it (the farm prints it at start). Takes the place of the CA file",
        default="",
    )
    pack_files: BoolProperty(
        name="Pack external files into the .blend",
        description="Send one .blend with textures and other external files packed into it (as Blender's "
                    "File > External Data > Pack Resources would, but in a copy), instead of the project: "
                    "the .blend plus its files, of which only those the farm lacks are uploaded",
        default=False,
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "address")
        layout.prop(self, "token")
        layout.prop(self, "tls_ca")
        layout.prop(self, "tls_fingerprint")
        layout.prop(self, "pack_files")
        layout.label(text="Saved with Blender's preferences (as plain text in userpref.blend).", icon="INFO")


def _init_frame_override(settings, context):
    # Turning the override on starts from the scene's own range.
    if settings.use_frame_range:
        scene = context.scene
        settings.frame_start = scene.frame_start
        settings.frame_end = scene.frame_end


class ArchenlandSceneSettings(bpy.types.PropertyGroup):
    use_frame_range: BoolProperty(
        name="Override Frame Range",
        description="Render these frames on the farm instead of the scene's frame range",
        default=False,
        update=_init_frame_override,
    )
    frame_start: IntProperty(name="Start", description="First frame to render on the farm", default=1)
    frame_end: IntProperty(name="End", description="Last frame to render on the farm", default=250)
    allow_scripts: BoolProperty(
        name="Allow Scripts",
        description="Let workers run Python scripts embedded in this .blend (drivers, startup scripts). "
        "Only for files you trust: the scripts run on every render machine",
        default=False,
    )


def frames_field(scene):
    settings = scene.archenland
    if settings.use_frame_range:
        return farm_client.frame_range_text(settings.frame_start, settings.frame_end, scene.frame_step)
    return farm_client.frame_range_text(scene.frame_start, scene.frame_end, scene.frame_step)


# ---- job polling (bpy.app.timers) -----------------------------------------------------


def _poll_tick():
    watcher = state.watcher
    if watcher is None:
        return None
    keep_going = watcher.tick()
    _redraw_panels()
    return POLL_INTERVAL_S if keep_going else None


def follow_job(address, token, job, trust=None):
    """Shows `job` in the panel and polls its status every 2 s until it ends."""
    state.watcher = submission.JobWatcher(address, token, job, trust)
    if not bpy.app.timers.is_registered(_poll_tick):
        # persistent: the job goes on when another file is opened, so does the panel.
        bpy.app.timers.register(_poll_tick, first_interval=POLL_INTERVAL_S, persistent=True)


def _after_detached_submission():
    # The modal operator was cancelled (e.g. another file was opened) while its
    # upload went on: finish the bookkeeping here; the panel shows the outcome.
    task = state.task
    if task is None:
        return None
    _redraw_panels()
    if task.running:
        return MODAL_TICK_S
    if task.job:
        follow_job(task.address, task.token, task.job, task.trust)
    return None


# ---- operators ----------------------------------------------------------------------------


class ARCHENLAND_OT_submit(bpy.types.Operator):
    """Send a copy of this file (unsaved changes included) and the files it uses to the render farm"""

    bl_idname = "archenland.submit"
    bl_label = "Submit to Farm"
    bl_options = {"REGISTER"}  # no UNDO: nothing in the open file changes

    @classmethod
    def poll(cls, context):
        if state.task is not None and state.task.running:
            cls.poll_message_set("A submission is still being uploaded")
            return False
        return context.scene is not None

    def _report(self, level, message):
        self.report({level}, message)
        # Also on stdout: Blender's system console, and `blender -b` runs in scripts.
        _log(f"Archenland: {level}: {message}")

    def _start(self, context):
        scene = context.scene
        prefs = addon_prefs(context)
        address = prefs.address if prefs else DEFAULT_ADDRESS
        token = prefs.token if prefs else ""
        try:
            address = farm_client.normalize_address(address)
            # The file browser may store a "//" path, relative to the open .blend.
            ca_file = bpy.path.abspath(prefs.tls_ca) if prefs and prefs.tls_ca else ""
            trust = farm_client.TlsTrust(ca_file, prefs.tls_fingerprint) if prefs else None
            fields = {
                "frames": frames_field(scene),
                "allowScripts": "true" if scene.archenland.allow_scripts else "false",
            }
        except farm_client.FarmError as error:
            self._report("ERROR", str(error))
            return None

        pack = bool(prefs and prefs.pack_files)
        # Packing and uploading read images from disk: paint strokes not saved yet would be lost.
        warnings = []
        for image in bpy.data.images:
            if not (image.is_dirty and image.users and image.packed_file is None):
                continue
            if image.source == "GENERATED":
                warnings.append(f'Image "{image.name}" exists only in memory: the farm renders it without '
                                "your paint (Image > Save, or Image > Pack, first)")
            else:
                warnings.append(f'Image "{image.name}" has unsaved changes: the farm gets the version on disk '
                                "(Image > Save first to send the changes)")

        name = bpy.path.basename(bpy.data.filepath) or "untitled.blend"
        workdir = tempfile.mkdtemp(prefix="archenland-submit-")
        # A name that says what it is: Blender reports 'Saved "<name>"' in the status
        # bar, which must not look as if the artist's own file had been saved.
        copy_path = os.path.join(workdir, os.path.splitext(name)[0] + ".farm-copy.blend")
        project_files, missing = None, []
        if not pack:
            try:
                # The files this session uses (unsaved changes included), by the farm's
                # own walk; only paths here, hashed later in the background thread.
                found, absent = dependencies_module().dependencies()
            except Exception as error:  # noqa: BLE001 - shown to the user, with the traceback on the console
                traceback.print_exc()
                shutil.rmtree(workdir, ignore_errors=True)
                self._report("ERROR", f"Could not list the files the scene uses: {error}. "
                                      'Turn on "Pack external files into the .blend" to send it packed instead')
                return None
            project_files = [entry["path"] for entry in found]
            missing = [entry.get("ref") or entry["path"] for entry in absent]
        try:
            # copy=True: write the current state to copy_path without making it the
            # open file. Packed: relative_remap rewrites "//" paths in the copy so they
            # still find the artist's files from the temp folder, where the packing step
            # reads them. As a project: the copy keeps the original's "//" paths, since
            # the worker puts it where the original is in the project's tree.
            bpy.ops.wm.save_as_mainfile(filepath=copy_path, copy=True, relative_remap=pack)
        except RuntimeError as error:
            shutil.rmtree(workdir, ignore_errors=True)
            self._report("ERROR", f"Could not save a copy for the farm: {str(error).strip()}")
            return None

        task = submission.Submission(
            address=address,
            token=token,
            blender_binary=bpy.app.binary_path,
            copy_path=copy_path,
            workdir=workdir,
            fields=fields,
            filename=name,
            log=_log,
            trust=trust,
            project_files=project_files,
            blend_path=bpy.data.filepath or None,
            missing_files=missing,
        )
        task.warnings.extend(warnings)
        state.task = task
        state.watcher = None
        return task.start()

    def _finish(self, context, task):
        for warning in task.warnings:
            self._report("WARNING", warning)
        if task.error:
            self._report("ERROR", task.error)
            _redraw_panels()
            return {"CANCELLED"}
        follow_job(task.address, task.token, task.job, task.trust)
        self._report("INFO", f"Submitted job {task.job['id']}: {state.watcher.url}")
        _redraw_panels()
        return {"FINISHED"}

    # From a script: run the same background thread, but wait for it.
    def execute(self, context):
        task = self._start(context)
        if task is None:
            return {"CANCELLED"}
        task.done.wait()
        return self._finish(context, task)

    # From the UI: keep Blender responsive and check the thread on a timer.
    def invoke(self, context, event):
        self._task = self._start(context)
        if self._task is None:
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(MODAL_TICK_S, window=context.window)
        wm.modal_handler_add(self)
        _redraw_panels()
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "TIMER":
            _redraw_panels()
            if not self._task.running:
                context.window_manager.event_timer_remove(self._timer)
                return self._finish(context, self._task)
        return {"PASS_THROUGH"}

    def cancel(self, context):
        try:
            context.window_manager.event_timer_remove(self._timer)
        except (ReferenceError, AttributeError, RuntimeError):
            pass
        if not bpy.app.timers.is_registered(_after_detached_submission):
            bpy.app.timers.register(_after_detached_submission, first_interval=MODAL_TICK_S, persistent=True)


class ARCHENLAND_OT_copy_link(bpy.types.Operator):
    """Copy the link to the job's page in the farm's web interface"""

    bl_idname = "archenland.copy_link"
    bl_label = "Copy Link"

    url: StringProperty()

    def execute(self, context):
        context.window_manager.clipboard = self.url
        self.report({"INFO"}, f"Copied {self.url}")
        return {"FINISHED"}


# ---- panel ----------------------------------------------------------------------------------


class ARCHENLAND_PT_render(bpy.types.Panel):
    bl_label = "Archenland"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        scene = context.scene
        settings = scene.archenland

        prefs = addon_prefs(context)
        if prefs is not None:
            layout.prop(prefs, "address")
            layout.prop(prefs, "token")
            if prefs.address.strip().lower().startswith("https:"):
                layout.prop(prefs, "tls_ca")
                layout.prop(prefs, "tls_fingerprint")
        else:
            layout.label(text="Enable the add-on in Preferences to set the farm address", icon="ERROR")

        col = layout.column(heading="Frames")
        col.prop(settings, "use_frame_range", text="Override")
        if settings.use_frame_range:
            sub = col.column(align=True)
            sub.prop(settings, "frame_start")
            sub.prop(settings, "frame_end")
        else:
            step = f", step {scene.frame_step}" if scene.frame_step != 1 else ""
            split = col.split(factor=0.4)  # line up with the values of the split layout
            split.label(text="")
            split.label(text=f"Scene's range: {scene.frame_start}-{scene.frame_end}{step}")

        if prefs is not None:
            col = layout.column(heading="External Files")
            col.prop(prefs, "pack_files", text="Pack into the .blend")
            split = col.split(factor=0.4)
            split.label(text="")
            split.label(text="Packed: one file, all sent each time" if prefs.pack_files
                        else "Sent as a project: only new files upload")

        col = layout.column(heading="Scripts")
        col.prop(settings, "allow_scripts", text="Allow Scripts")
        warning = layout.column(align=True)
        warning.alert = settings.allow_scripts
        warning.label(text="Scripts in the .blend run on every worker.", icon="ERROR")
        warning.label(text="Allow only for files you trust.", icon="BLANK1")

        row = layout.row()
        row.scale_y = 1.5
        row.operator(ARCHENLAND_OT_submit.bl_idname, icon="EXPORT")

        self._draw_status(context, layout)

    @staticmethod
    def _draw_status(context, layout):
        task, watcher = state.task, state.watcher
        if task is None:
            return
        # Labels do not wrap in Blender: split long messages (the farm's errors) by hand.
        chars = max(24, int(context.region.width / (7 * context.preferences.system.ui_scale)) - 6)

        def message(text, icon, alert=False):
            col = box.column(align=True)
            col.alert = alert
            for i, line in enumerate(textwrap.wrap(text, chars) or [""]):
                col.label(text=line, icon=icon if i == 0 else "BLANK1")

        box = layout.box()
        box.use_property_split = False
        if task.running or task.error:
            message(task.status_text(), "ERROR" if task.error else "SORTTIME", alert=bool(task.error))
        for warning in task.warnings[:5]:
            message(warning, "ERROR")
        if len(task.warnings) > 5:
            box.label(text=f"... and {len(task.warnings) - 5} more (see the system console)")
        if watcher is not None:
            box.label(text=f"Job {watcher.job_id}", icon="RENDER_ANIMATION")
            message(watcher.text.capitalize(), "CHECKMARK" if watcher.job.get("state") == "completed" else "TIME")
            if watcher.problem:
                message(watcher.problem, "ERROR", alert=True)
            box.label(text=watcher.url)
            row = box.row(align=True)
            row.operator("wm.url_open", text="Open in Browser", icon="URL").url = watcher.url
            row.operator(ARCHENLAND_OT_copy_link.bl_idname, icon="COPYDOWN").url = watcher.url


# ---- registration ---------------------------------------------------------------------------

classes = (
    ArchenlandPreferences,
    ArchenlandSceneSettings,
    ARCHENLAND_OT_submit,
    ARCHENLAND_OT_copy_link,
    ARCHENLAND_PT_render,
)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.archenland = PointerProperty(type=ArchenlandSceneSettings)


def unregister():
    for timer in (_poll_tick, _after_detached_submission):
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)
    state.watcher = None
    del bpy.types.Scene.archenland
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
