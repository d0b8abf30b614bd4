"""Talking to an Archenland farm over HTTP, with Python's standard library only.

This module must not import bpy: it runs in the add-on's background threads and
is unit tested with plain python3 (see tests/test_farm_client.py).

The API (see the repository's README):
  GET  {address}/api/workers       -> [{"name", "state", ...}]  (small; checks the token
                                   before anything is packed or uploaded)
  POST {address}/api/jobs          multipart/form-data: "file" (the .blend) plus text
                                   fields such as "frames" ("1-250") and "allowScripts"
                                   -> 201 with the job as JSON
  GET  {address}/api/jobs/{id}     -> the job, with "state" and "counts" {"done", "total", ...}
  POST {address}/api/projects      JSON manifest {"root", "main", "files": [{"path", "sha256", "size"}]}
                                   -> {"id", "missing": [sha256], "totalBytes", "missingBytes"}
  PUT  {address}/api/files/{sha256} the raw bytes of one project file -> 201
  (a job of a project: POST /api/jobs with the extra text field "project" = the id)
Errors come back as JSON {"code": "...", "error": "..."} with a 4xx/5xx status; FarmError carries
that text unchanged so the user reads the farm's own words.

An https:// farm (server settings tls_cert and tls_key) is checked against the system's
certificate authorities, a CA file, or exactly one certificate by fingerprint (TlsTrust).
"""

import hashlib
import http.client
import json
import os
import secrets
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request

USER_AGENT = "archenland-blender-addon/1"
# Tells the farm this is a program, not a page in a browser (the farm requires it for
# state-changing requests that are not authorized by the token itself).
CLIENT_HEADER = "X-Archenland-Client"
CHUNK_SIZE = 1024 * 1024
#: Per socket operation (connect, each send, each read), not for the whole upload.
DEFAULT_TIMEOUT = 60.0
TERMINAL_STATES = ("completed", "failed", "cancelled")


class FarmError(Exception):
    """A failure to show the user as is: refused request, unreachable farm, bad reply."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


# ---- addresses ------------------------------------------------------------------


def normalize_address(text):
    """'farm:8080/' -> 'http://farm:8080'. Raises FarmError for something that is no URL."""
    address = (text or "").strip()
    if not address:
        raise FarmError("No farm address: enter it in the Archenland panel, e.g. http://127.0.0.1:8080")
    if "://" not in address:
        address = "http://" + address
    parts = urllib.parse.urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FarmError(f'"{text}" is not a farm address: expected something like http://127.0.0.1:8080')
    if parts.query or parts.fragment:
        raise FarmError(f'"{text}" is not a farm address: remove the part after "?" or "#"')
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise FarmError(f'"{text}" is not a farm address: the port is not a number from 0 to 65535') from None
    return address.rstrip("/")


def job_page_url(address, job_id):
    """The web interface's page for a job."""
    return f"{normalize_address(address)}/#/jobs/{job_id}"


# ---- TLS: whom to trust for an https:// farm -------------------------------------------


def normalize_fingerprint(text):
    """'AB:CD:...', 'abcd...' or 'sha256//...' -> 64 lower-case hex digits; '' -> None."""
    value = (text or "").strip()
    if not value:
        return None
    lowered = value.lower()
    for prefix in ("sha256//", "sha256 fingerprint="):
        if lowered.startswith(prefix):
            value = value[len(prefix):]
    digits = value.replace(":", "").lower()
    if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
        raise FarmError(f'"{text}" is not a SHA-256 certificate fingerprint: expected 64 hex digits, colons allowed')
    return digits


def _shown(fingerprint_hex):
    """As the farm prints it: AB:CD:..."""
    return ":".join(fingerprint_hex[i:i + 2] for i in range(0, len(fingerprint_hex), 2)).upper()


class CertificateMismatch(OSError):
    """The farm presented another certificate than the pinned one. An OSError, so urllib
    wraps it in URLError like any other connection failure."""


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Checks the certificate's fingerprint right after the TLS handshake, before a byte of
    the request (with its token) is sent. The chain is not verified: exactly this
    certificate is accepted, whoever signed it, as the farm's tls_fingerprint does."""

    def __init__(self, *args, fingerprint, **kwargs):
        super().__init__(*args, **kwargs)
        self._fingerprint = fingerprint

    def connect(self):
        super().connect()
        actual = hashlib.sha256(self.sock.getpeercert(binary_form=True) or b"").hexdigest()
        if actual != self._fingerprint:
            self.sock.close()
            self.sock = None
            raise CertificateMismatch(
                f"the farm's certificate has fingerprint {_shown(actual)}, expected {_shown(self._fingerprint)}"
            )


class _PinnedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, fingerprint):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the fingerprint check replaces it
        super().__init__(context=context)
        self._pinned_context = context
        self._fingerprint = fingerprint

    def https_open(self, req):
        def connection(host, **kwargs):
            return _PinnedHTTPSConnection(host, fingerprint=self._fingerprint, **kwargs)

        return self.do_open(connection, req, context=self._pinned_context)


class TlsTrust:
    """Whom to trust for an https:// farm: the system's certificate authorities (nothing
    set), a CA file (PEM), or exactly one certificate by its SHA-256 fingerprint, which
    then decides alone. Raises FarmError for a fingerprint that is no fingerprint."""

    def __init__(self, ca_file="", fingerprint=""):
        self.ca_file = (ca_file or "").strip()
        self.fingerprint = normalize_fingerprint(fingerprint)

    @property
    def custom(self):
        return bool(self.ca_file or self.fingerprint)

    def opener(self):
        if self.fingerprint:
            return urllib.request.build_opener(_PinnedHTTPSHandler(self.fingerprint))
        if self.ca_file:
            try:
                context = ssl.create_default_context(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as error:
                raise FarmError(f"Cannot use the CA file {self.ca_file}: {error}") from None
            return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
        return urllib.request.build_opener()


_SYSTEM_TRUST = TlsTrust()


# ---- multipart/form-data, streamed ----------------------------------------------------


def _quote_disposition(value):
    # What browsers do (HTML spec): quotes and line breaks percent-encoded, the rest as UTF-8.
    return value.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")


class MultipartFile:
    """A multipart/form-data body with text fields and one file, produced in chunks.

    The file is read CHUNK_SIZE bytes at a time while the body is sent, so a
    multi-gigabyte .blend costs a megabyte of memory. The exact length is known
    up front (Content-Length), so no chunked transfer encoding is needed.
    """

    def __init__(self, fields, file_field, file_path, filename=None, boundary=None, chunk_size=CHUNK_SIZE):
        self.boundary = boundary or ("ArchenlandBoundary" + secrets.token_hex(16))
        self.file_path = file_path
        self.chunk_size = chunk_size
        self.file_size = os.path.getsize(file_path)
        filename = filename or os.path.basename(file_path)
        head = []
        for name, value in fields.items():
            head.append(
                f"--{self.boundary}\r\n"
                f'Content-Disposition: form-data; name="{_quote_disposition(name)}"\r\n'
                "\r\n"
                f"{value}\r\n"
            )
        head.append(
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="{_quote_disposition(file_field)}"; '
            f'filename="{_quote_disposition(filename)}"\r\n'
            "Content-Type: application/octet-stream\r\n"
            "\r\n"
        )
        self.head = "".join(head).encode("utf-8")
        self.tail = f"\r\n--{self.boundary}--\r\n".encode("ascii")
        self.length = len(self.head) + self.file_size + len(self.tail)

    @property
    def content_type(self):
        return f"multipart/form-data; boundary={self.boundary}"

    def chunks(self, progress=None):
        """Yields the body; calls progress(bytes_sent_so_far, total) as it goes."""
        sent = 0

        def step(chunk):
            nonlocal sent
            sent += len(chunk)
            if progress is not None:
                progress(sent, self.length)
            return chunk

        yield step(self.head)
        remaining = self.file_size
        with open(self.file_path, "rb") as source:
            while remaining > 0:
                chunk = source.read(min(self.chunk_size, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield step(chunk)
        if remaining != 0:
            # Content-Length was promised; a file that shrank would corrupt the request.
            raise FarmError(f"{self.file_path} changed size while it was being uploaded")
        yield step(self.tail)


# ---- requests ---------------------------------------------------------------------------


def _headers(token, extra=None):
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json", CLIENT_HEADER: "blender-addon"}
    if token:
        headers["Authorization"] = f"Bearer {token.strip()}"
    headers.update(extra or {})
    return headers


def _error_text(body_bytes):
    """The farm's {"error": "..."} text, or the start of whatever else came back."""
    text = body_bytes.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300] or "no details"
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"]
    return text[:300]


def _request(method, url, token, what, data=None, headers=None, timeout=DEFAULT_TIMEOUT, trust=None):
    trust = trust or _SYSTEM_TRUST
    request = urllib.request.Request(url, data=data, method=method, headers=_headers(token, headers))
    address = url.split("/api/", 1)[0]
    if trust.custom and not url.startswith("https://"):
        raise FarmError(f"A CA file or certificate fingerprint is set, but the farm address {address} is not https://: "
                        "change it to https://")
    try:
        with trust.opener().open(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        try:
            detail = _error_text(error.read(65536))
        except OSError:
            detail = error.reason or "no details"
        message = f"The farm refused {what}: {detail} (HTTP {error.code})"
        if error.code == 401:
            message += ". Check the token in the Archenland panel (the farm prints it at start, and keeps it in archenland-data/farm-token)"
        raise FarmError(message, error.code) from None
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, CertificateMismatch):
            raise FarmError(f"Refused the farm at {address}: {reason}. Nothing was sent; check the certificate "
                            "fingerprint in the Archenland preferences (the farm prints it at start)") from None
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise FarmError(f"Refused the farm at {address}: its certificate is not trusted ({reason.verify_message}). "
                            "Choose the farm's CA file, or enter its certificate fingerprint, in the Archenland "
                            "preferences") from None
        if isinstance(reason, ssl.SSLError) and reason.reason == "WRONG_VERSION_NUMBER":
            raise FarmError(f"The farm at {address} does not speak https on this port: use http://") from None
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise FarmError(f"The farm at {address} did not answer within {timeout:.0f} s") from None
        if isinstance(reason, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
            raise FarmError(f"The farm at {address} closed the connection during {what}: {reason}") from None
        raise FarmError(f"Cannot reach the farm at {address}: {getattr(reason, 'strerror', None) or reason}") from None
    except (socket.timeout, TimeoutError):
        raise FarmError(f"The farm at {address} did not answer within {timeout:.0f} s") from None
    except (ConnectionError, OSError) as error:
        raise FarmError(f"Lost the connection to the farm at {address}: {error}") from None
    try:
        return json.loads(body.decode("utf-8"))
    except ValueError:
        raise FarmError(f"The farm at {address} sent something that is not JSON: {body[:120]!r}") from None


def check_farm(address, token, timeout=15.0, trust=None):
    """A small request that needs the same address, token and trust as an upload, made
    before packing so a typo fails in a second. Returns the farm's workers."""
    address = normalize_address(address)
    workers = _request("GET", f"{address}/api/workers", token, "the token", timeout=timeout, trust=trust)
    if not isinstance(workers, list):
        raise FarmError(f"{address} answered, but it does not look like an Archenland farm")
    return workers


def online_workers(workers):
    return [w for w in workers if isinstance(w, dict) and w.get("state") != "offline"]


def submit_job(address, token, blend_path, fields, filename=None, progress=None, timeout=DEFAULT_TIMEOUT, trust=None):
    """Uploads the .blend with the given text fields; returns the job the farm created."""
    address = normalize_address(address)
    body = MultipartFile({k: str(v) for k, v in fields.items()}, "file", blend_path, filename)
    job = _request(
        "POST",
        f"{address}/api/jobs",
        token,
        "the job",
        data=body.chunks(progress),
        headers={"Content-Type": body.content_type, "Content-Length": str(body.length)},
        timeout=timeout,
        trust=trust,
    )
    if not isinstance(job, dict) or not isinstance(job.get("id"), str):
        raise FarmError(f"The farm accepted the upload but sent no job id: {str(job)[:200]}")
    return job


def create_project(address, token, manifest, timeout=DEFAULT_TIMEOUT, trust=None):
    """Describes a project; returns {"id", "missing": [sha256 the farm lacks], "totalBytes", "missingBytes"}."""
    address = normalize_address(address)
    answer = _request(
        "POST",
        f"{address}/api/projects",
        token,
        "the project",
        data=json.dumps(manifest).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        timeout=timeout,
        trust=trust,
    )
    if (not isinstance(answer, dict) or not isinstance(answer.get("id"), str)
            or not isinstance(answer.get("missing"), list)):
        raise FarmError(f"The farm answered the project without an id or a list of missing files: {str(answer)[:200]}")
    return answer


def _file_chunks(path, size, progress, chunk_size=CHUNK_SIZE):
    remaining = size
    with open(path, "rb") as source:
        while remaining > 0:
            chunk = source.read(min(chunk_size, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            if progress is not None:
                progress(len(chunk))
            yield chunk
    if remaining != 0:
        raise FarmError(f"{path} changed size while it was being uploaded")


def upload_project_file(address, token, path, sha256, size, progress=None, timeout=DEFAULT_TIMEOUT, trust=None):
    """Streams one project file to PUT /api/files/{sha256}; progress(bytes) per chunk sent."""
    address = normalize_address(address)
    return _request(
        "PUT",
        f"{address}/api/files/{urllib.parse.quote(sha256, safe='')}",
        token,
        f"the file {os.path.basename(path)}",
        data=_file_chunks(path, size, progress),
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        timeout=timeout,
        trust=trust,
    )


def get_job(address, token, job_id, timeout=15.0, trust=None):
    address = normalize_address(address)
    return _request(
        "GET", f"{address}/api/jobs/{urllib.parse.quote(job_id, safe='')}", token, "the status request", timeout=timeout, trust=trust
    )


def describe_job(job):
    """'rendering: 3/10 frames done' (plus failures and the farm's error, if any)."""
    state = job.get("state", "unknown")
    counts = job.get("counts") or {}
    done, total, failed = counts.get("done", 0), counts.get("total", 0), counts.get("failed", 0)
    text = f"{state}: {done}/{total} frames done" if total else f"{state}"
    if failed:
        text += f", {failed} failed"
    if job.get("error"):
        text += f" ({job['error']})"
    return text


def frame_range_text(start, end, step=1):
    """The farm's frame syntax: '1-250', '7', '1-250:5'."""
    if end < start:
        raise FarmError(f"The frame range {start}-{end} ends before it starts")
    text = f"{start}" if start == end else f"{start}-{end}"
    return text if step == 1 else f"{text}:{step}"
