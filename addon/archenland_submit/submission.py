"""The slow parts of a submission, off Blender's UI thread. No bpy here.

Submission: check the farm, then either
  * as a project (the default): hash the files the scene uses (project.py), send the
    manifest, upload only the files the farm lacks, and submit the copy with the field
    "project"; or
  * packed (the "Pack external files into the .blend" option): pack the copy
    (packing.py) and upload it alone.
JobWatcher: fetches the job's status for the panel, one request at a time.
Both are driven from the UI thread (an operator's modal timer, bpy.app.timers)
which only reads their fields; every network call happens in a worker thread.
"""

import os
import shutil
import threading
import traceback

try:  # inside the add-on package
    from . import farm_client, packing, project
except ImportError:  # plain python3, for unit tests
    import farm_client
    import packing
    import project

FarmError = farm_client.FarmError


def _megabytes(size):
    return f"{size / (1024 * 1024):.1f} MB"


class Submission:
    """One upload of one saved copy. Runs in a daemon thread; `done` is set at the end.

    project_files None: pack the copy and send it alone. A list (the absolute paths the
    dependency walk found, possibly empty): send the scene as a project whose main .blend
    is blend_path (the artist's file; None for one never saved) with the copy's bytes.
    """

    def __init__(self, address, token, blender_binary, copy_path, workdir, fields, filename=None, log=print, trust=None,
                 project_files=None, blend_path=None, missing_files=()):
        self.address = address
        self.token = token
        self.trust = trust  # farm_client.TlsTrust for an https:// farm; None: the system's CAs
        self.blender_binary = blender_binary
        self.copy_path = copy_path
        self.workdir = workdir
        self.fields = fields
        self.filename = filename or os.path.basename(copy_path)
        self.log = log
        self.project_files = project_files
        self.blend_path = blend_path
        self.missing_files = list(missing_files)
        self.phase = "starting"  # checking, packing or hashing, uploading, submitted, failed
        self.sent = 0
        self.total = 0
        self.packed = []
        self.project = None  # the farm's answer to the manifest: {"id", "missing", "totalBytes", "missingBytes"}
        self.files_uploaded = 0
        self.uploaded_bytes = 0
        self.reused_bytes = 0
        self.warnings = []
        self.job = None
        self.error = None
        self.done = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self.run, name="archenland-submit", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self):
        return not self.done.is_set()

    def _phase(self, phase, message):
        self.phase = phase
        self.log(f"Archenland: {message}")

    def _progress(self, sent, total):
        self.sent, self.total = sent, total

    def run(self):
        try:
            self._phase("checking", f"contacting the farm at {self.address}")
            workers = farm_client.check_farm(self.address, self.token, trust=self.trust)
            if not farm_client.online_workers(workers):
                self.warnings.append("No render worker is connected to the farm right now: "
                                     "the job will wait until one connects")
            if self.project_files is None:
                self._pack()
            else:
                self._send_project()
            blend_size = os.path.getsize(self.copy_path)
            offset = self.sent
            self.total = offset + blend_size
            if self.project_files is None:
                self._phase("uploading", f"uploading {self.filename} ({_megabytes(blend_size)}, "
                                         f"{len(self.packed)} external file(s) packed)")
            else:
                self._phase("uploading", f"uploading {self.filename} ({_megabytes(blend_size)})")
            self.job = farm_client.submit_job(
                self.address, self.token, self.copy_path, self.fields, self.filename,
                progress=lambda sent, _total: self._progress(offset + min(sent, blend_size), self.total),
                trust=self.trust,
            )
            self._phase("submitted", f"submitted job {self.job['id']}")
        except (FarmError, packing.PackError, project.ProjectError) as error:
            self.error = str(error)
            self.phase = "failed"
        except Exception as error:  # a bug: keep the traceback for the console
            traceback.print_exc()
            self.error = f"Unexpected error while submitting: {error}"
            self.phase = "failed"
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.done.set()

    def _pack(self):
        self._phase("packing", "packing textures and other external files into the copy")
        report = packing.pack_copy(self.blender_binary, self.copy_path)
        self.packed = list(report.get("packed", []))
        self.warnings += list(report.get("warnings", []))

    def _send_project(self):
        """Manifest, then the files the farm lacks; sets the field "project" for the job."""
        if self.missing_files:
            shown = ", ".join(self.missing_files[:5]) + (", ..." if len(self.missing_files) > 5 else "")
            self.warnings.append(f"The scene uses {len(self.missing_files)} file(s) that are not on this computer "
                                 f"({shown}): the farm holds the job and lists them")
        self._phase("hashing", f"finding the files the scene uses ({len(self.project_files)} found)")
        local = project.build_project(self.blend_path, self.project_files, untitled_name=self.filename)
        if local is None:
            self.log("Archenland: the scene uses no external file: sending the .blend alone")
            return
        self.project = farm_client.create_project(self.address, self.token, local.manifest, trust=self.trust)
        upload = project.files_to_upload(local, self.project["missing"])
        self.uploaded_bytes = sum(entry["size"] for entry in upload)
        self.reused_bytes = max(0, local.total_bytes - self.uploaded_bytes)
        blend_size = os.path.getsize(self.copy_path)
        self.sent, self.total = 0, self.uploaded_bytes + blend_size
        self._phase("uploading", f"project {self.project['id'][:12]}: {len(local.files)} file(s), root {local.root}, "
                                 f"main {local.main}; uploading {len(upload)} file(s) ({_megabytes(self.uploaded_bytes)}), "
                                 f"{len(local.files) - len(upload)} already on the farm ({_megabytes(self.reused_bytes)})")

        def advance(count):
            self.sent += count

        for entry in upload:
            farm_client.upload_project_file(self.address, self.token, entry["local"], entry["sha256"], entry["size"],
                                            progress=advance, trust=self.trust)
            self.files_uploaded += 1
        self.fields = {**self.fields, "project": self.project["id"]}

    def status_text(self):
        if self.phase == "checking":
            return "Contacting the farm..."
        if self.phase == "packing":
            return "Packing external files into a copy..."
        if self.phase == "hashing":
            return "Finding the files the scene uses..."
        if self.phase == "uploading":
            percent = 100 * self.sent // self.total if self.total else 0
            return f"Uploading {percent}% ({_megabytes(self.sent)} of {_megabytes(self.total)})"
        if self.phase == "submitted":
            return "Submitted"
        if self.phase == "failed":
            return f"Failed: {self.error}"
        return "Starting..."


class JobWatcher:
    """The latest known status of one job. tick() is cheap and never blocks."""

    def __init__(self, address, token, job, trust=None):
        self.address = address
        self.token = token
        self.trust = trust
        self.job_id = job["id"]
        self.url = farm_client.job_page_url(address, self.job_id)
        self.job = job
        self.text = farm_client.describe_job(job)
        self.problem = None
        self.finished = job.get("state") in farm_client.TERMINAL_STATES
        self._lock = threading.Lock()
        self._outcome = None
        self._thread = None

    def tick(self):
        """Applies the last fetched status and starts the next fetch. False: stop polling."""
        self._apply()
        if self.finished:
            return False
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._fetch, name="archenland-poll", daemon=True)
            self._thread.start()
        return True

    def refresh(self):
        """Fetches and applies the status on the calling thread (scripts, tests)."""
        self._fetch()
        self._apply()
        return self.job

    def _fetch(self):
        try:
            outcome = ("job", farm_client.get_job(self.address, self.token, self.job_id, trust=self.trust))
        except FarmError as error:
            outcome = ("error", error)
        except Exception as error:  # never let a polling thread die silently
            outcome = ("error", FarmError(f"Unexpected error while checking the job: {error}"))
        with self._lock:
            self._outcome = outcome

    def _apply(self):
        with self._lock:
            outcome, self._outcome = self._outcome, None
        if outcome is None:
            return
        kind, value = outcome
        if kind == "job":
            self.job = value
            self.text = farm_client.describe_job(value)
            self.problem = None
            self.finished = value.get("state") in farm_client.TERMINAL_STATES
        elif value.status in (401, 403, 404):
            self.problem = str(value)  # retrying cannot help
            self.finished = True
        else:
            self.problem = f"{value} (retrying)"
