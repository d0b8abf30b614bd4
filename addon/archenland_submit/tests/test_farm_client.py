"""Unit tests for the add-on's network code, with plain python3 (no Blender).

  PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s addon/archenland_submit/tests -t addon/archenland_submit

A local http.server stands in for the farm and records what arrives. Run by
test/addon.test.ts too. Not shipped in the add-on zip.
"""

import email.parser
import email.policy
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import tracemalloc
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import farm_client  # noqa: E402
import project  # noqa: E402
import submission  # noqa: E402


class FakeFarm(BaseHTTPRequestHandler):
    """Answers like the farm; keeps the last request (body hashed, or kept if small)."""

    token = "right-token"
    keep_body = True
    requests = []
    reply = None  # (status, content type, bytes) to force an answer
    stored = {}  # sha256 -> bytes: the project files the farm has

    def log_message(self, *args):
        pass

    def _send(self, status, payload, content_type="application/json"):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self):
        return self.headers.get("Authorization") == f"Bearer {self.token}"

    def do_GET(self):
        type(self).requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
        if not self._authorized():
            return self._send(401, {"error": "missing or wrong access token"})
        if self.path == "/api/workers":
            return self._send(200, [{"name": "w1", "state": "idle"}, {"name": "w2", "state": "offline"}])
        if self.path == "/api/jobs/abc123":
            counts = {"total": 10, "queued": 4, "rendering": 1, "done": 5, "failed": 0}
            return self._send(200, {"id": "abc123", "state": "rendering", "counts": counts, "error": None})
        return self._send(404, {"error": f"no route GET {self.path}"})

    def do_POST(self):
        self._receive("POST")
        if type(self).reply:
            status, content_type, payload = type(self).reply
            return self._send(status, payload, content_type)
        if not self._authorized():
            return self._send(401, {"error": "missing or wrong access token"})
        if self.path == "/api/projects":
            manifest = json.loads(type(self).requests[-1]["body"])
            missing = sorted({f["sha256"] for f in manifest["files"] if f["sha256"] not in type(self).stored})
            sizes = {f["sha256"]: f["size"] for f in manifest["files"]}
            return self._send(200, {"id": "e" * 64, "missing": missing, "totalBytes": sum(sizes.values()),
                                    "missingBytes": sum(sizes[h] for h in missing)})
        return self._send(201, {"id": "abc123", "state": "probing", "counts": {"total": 0, "done": 0}})

    def do_PUT(self):
        request = self._receive("PUT")
        if not self._authorized():
            return self._send(401, {"error": "missing or wrong access token"})
        sha = self.path.rsplit("/", 1)[-1]
        if request["sha256"] != sha:
            return self._send(400, {"code": "CORRUPT_UPLOAD", "error": "the file's content does not match its SHA-256"})
        type(self).stored[sha] = request["body"]
        return self._send(201, {"sha256": sha, "size": request["length"]})

    def _receive(self, method):
        length = int(self.headers["Content-Length"])
        digest = hashlib.sha256()
        kept = bytearray()
        remaining = length
        while remaining:
            chunk = self.rfile.read(min(65536, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            digest.update(chunk)
            if type(self).keep_body:
                kept += chunk
        request = {
            "method": method, "path": self.path, "headers": dict(self.headers),
            "length": length, "received": length - remaining, "sha256": digest.hexdigest(), "body": bytes(kept),
        }
        type(self).requests.append(request)
        return request


def parse_multipart(content_type, body):
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts[name] = (part.get_filename(), part.get_payload(decode=True))
    return parts


class FakeFarmCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = ThreadingHTTPServer(("127.0.0.1", 0), FakeFarm)
        cls.address = f"http://127.0.0.1:{cls.server.server_address[1]}"
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()

    def setUp(self):
        FakeFarm.requests = []
        FakeFarm.keep_body = True
        FakeFarm.reply = None
        FakeFarm.stored = {}
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)


class FarmClientTest(FakeFarmCase):
    def blend(self, size, name="scene.blend"):
        path = os.path.join(self.tmp.name, name)
        with open(path, "wb") as handle:
            handle.write(b"BLENDER-v304")
            block = bytes(range(256)) * 4096  # 1 MiB
            remaining = size - 12
            while remaining > 0:
                handle.write(block[:remaining])
                remaining -= len(block)
        return path

    def test_upload_is_a_valid_multipart_form_with_token_and_fields(self):
        path = self.blend(300_000, "my scène.blend")
        progress = []
        job = farm_client.submit_job(
            self.address + "/", "right-token", path, {"frames": "1-250", "allowScripts": "false"},
            progress=lambda sent, total: progress.append((sent, total)),
        )
        self.assertEqual(job["id"], "abc123")
        request = FakeFarm.requests[-1]
        self.assertEqual(request["path"], "/api/jobs")
        self.assertEqual(request["headers"]["Authorization"], "Bearer right-token")
        self.assertEqual(request["headers"]["X-Archenland-Client"], "blender-addon")
        self.assertNotIn("Transfer-Encoding", request["headers"])
        self.assertEqual(request["received"], request["length"])
        parts = parse_multipart(request["headers"]["Content-Type"], request["body"])
        self.assertEqual(parts["frames"], (None, b"1-250"))
        self.assertEqual(parts["allowScripts"], (None, b"false"))
        filename, data = parts["file"]
        self.assertEqual(filename, "my scène.blend")
        with open(path, "rb") as handle:
            self.assertEqual(data, handle.read())
        self.assertEqual(progress[-1], (request["length"], request["length"]))
        self.assertEqual([sent for sent, _ in progress], sorted(sent for sent, _ in progress))

    def test_the_file_is_streamed_not_read_whole(self):
        size = 24 * 1024 * 1024
        path = self.blend(size)
        body = farm_client.MultipartFile({"frames": "1"}, "file", path, chunk_size=256 * 1024)
        self.assertEqual(body.length, len(body.head) + size + len(body.tail))
        self.assertLessEqual(max(len(chunk) for chunk in body.chunks()), 256 * 1024)
        # Uploading through urllib keeps Python's memory far below the file size.
        FakeFarm.keep_body = False
        tracemalloc.start()
        try:
            farm_client.submit_job(self.address, "right-token", path, {"frames": "1"})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertLess(peak, 8 * 1024 * 1024, f"peak {peak} bytes while uploading {size}")
        self.assertEqual(FakeFarm.requests[-1]["received"], body.length)

    def test_a_wrong_token_is_reported_with_the_farms_words(self):
        workers = farm_client.check_farm(self.address, "right-token")
        self.assertEqual([w["name"] for w in farm_client.online_workers(workers)], ["w1"])
        with self.assertRaises(farm_client.FarmError) as caught:
            farm_client.check_farm(self.address, "wrong-token")
        self.assertEqual(caught.exception.status, 401)
        self.assertIn("missing or wrong access token", str(caught.exception))
        self.assertIn("HTTP 401", str(caught.exception))
        with self.assertRaises(farm_client.FarmError) as caught:
            farm_client.submit_job(self.address, "wrong-token", self.blend(1000), {})
        self.assertIn("The farm refused the job: missing or wrong access token", str(caught.exception))

    def test_server_errors_that_are_not_json_still_read_plainly(self):
        FakeFarm.reply = (502, "text/html", b"<html>Bad Gateway</html>")
        with self.assertRaises(farm_client.FarmError) as caught:
            farm_client.submit_job(self.address, "right-token", self.blend(1000), {})
        self.assertIn("Bad Gateway", str(caught.exception))
        self.assertIn("HTTP 502", str(caught.exception))

    def test_an_unreachable_farm_names_the_address(self):
        with socket.socket() as probe:  # a port that was free a moment ago
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with self.assertRaises(farm_client.FarmError) as caught:
            farm_client.check_farm(f"127.0.0.1:{port}", "t", timeout=5)
        self.assertIn(f"Cannot reach the farm at http://127.0.0.1:{port}", str(caught.exception))

    def test_https_to_a_plain_farm_says_so(self):
        with self.assertRaises(farm_client.FarmError) as caught:
            farm_client.check_farm(self.address.replace("http:", "https:"), "right-token", timeout=5)
        self.assertIn("does not speak https on this port", str(caught.exception))

    def test_job_status(self):
        job = farm_client.get_job(self.address, "right-token", "abc123")
        self.assertEqual(farm_client.describe_job(job), "rendering: 5/10 frames done")
        watcher = submission.JobWatcher(self.address, "right-token", {"id": "abc123", "state": "probing"})
        self.assertEqual(watcher.url, f"{self.address}/#/jobs/abc123")
        watcher.refresh()
        self.assertEqual(watcher.text, "rendering: 5/10 frames done")
        self.assertFalse(watcher.finished)
        gone = submission.JobWatcher(self.address, "right-token", {"id": "nojob1", "state": "queued"})
        gone.refresh()
        self.assertTrue(gone.finished)
        self.assertIn("no route", gone.problem)

    def test_addresses_and_frame_ranges(self):
        self.assertEqual(farm_client.normalize_address(" farm.local:8080/ "), "http://farm.local:8080")
        self.assertEqual(farm_client.normalize_address("https://farm/x/"), "https://farm/x")
        for bad in ["", "ftp://farm", "http://", "http://farm:99999", "http://farm/#/jobs"]:
            with self.assertRaises(farm_client.FarmError, msg=bad):
                farm_client.normalize_address(bad)
        self.assertEqual(farm_client.frame_range_text(1, 250), "1-250")
        self.assertEqual(farm_client.frame_range_text(7, 7), "7")
        self.assertEqual(farm_client.frame_range_text(1, 250, 5), "1-250:5")
        with self.assertRaises(farm_client.FarmError):
            farm_client.frame_range_text(10, 1)


def make_certificate(directory, name):
    """A self-signed certificate for 127.0.0.1 (openssl, as the farm's own tests make one)."""
    cert, key = os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}-key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "2",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )
    return cert, key


def fingerprint_of(cert_file):
    with open(cert_file) as handle:
        der = ssl.PEM_cert_to_DER_cert(handle.read())
    return hashlib.sha256(der).hexdigest()


@unittest.skipIf(shutil.which("openssl") is None, "needs openssl to make a certificate")
class ProjectTest(FakeFarmCase):
    """A scene sent as a project: the manifest (as src/cli/project.ts builds it) and only new files."""

    def write(self, relative, data):
        path = os.path.join(self.tmp.name, *relative.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
        return path

    def test_the_manifest_is_the_clis(self):
        blend = self.write("shots/010/main.blend", b"BLENDER-v304")
        texture = self.write("textures/wood.png", b"wood")
        plate = self.write("shots/010/plates/p.0001.exr", b"plate")
        same = self.write("shots/010/plates/p.0002.exr", b"plate")
        local = project.build_project(blend, [texture, plate, same, texture, blend])
        self.assertEqual(local.root, self.tmp.name)
        manifest = local.manifest
        self.assertEqual(manifest["main"], "shots/010/main.blend")
        self.assertEqual(manifest["files"], [
            {"path": "shots/010/plates/p.0001.exr", "sha256": hashlib.sha256(b"plate").hexdigest(), "size": 5},
            {"path": "shots/010/plates/p.0002.exr", "sha256": hashlib.sha256(b"plate").hexdigest(), "size": 5},
            {"path": "textures/wood.png", "sha256": hashlib.sha256(b"wood").hexdigest(), "size": 4},
        ])
        # The same content under two paths is uploaded once.
        upload = project.files_to_upload(local, [hashlib.sha256(b"plate").hexdigest()])
        self.assertEqual([entry["path"] for entry in upload], ["shots/010/plates/p.0001.exr"])
        # Files only beside the .blend: the root is the .blend's folder.
        beside = project.build_project(blend, [plate])
        self.assertEqual((beside.root, beside.main), (os.path.dirname(blend), "main.blend"))
        self.assertIsNone(project.build_project(blend, []), "no file: the .blend goes alone")
        untitled = project.build_project(None, [texture], untitled_name="untitled.blend")
        self.assertEqual((untitled.root, untitled.main), (os.path.dirname(texture), "untitled.blend"))

    def submission(self, files, blend_path):
        workdir = tempfile.mkdtemp(dir=self.tmp.name)
        copy = os.path.join(workdir, "main.farm-copy.blend")
        shutil.copyfile(blend_path, copy)
        return submission.Submission(self.address, "right-token", "blender", copy, workdir, {"frames": "1"},
                                     filename="main.blend", log=lambda message: None,
                                     project_files=files, blend_path=blend_path)

    def test_only_the_files_the_farm_lacks_are_uploaded(self):
        blend = self.write("main.blend", b"BLENDER-v304" + b"x" * 1000)
        old = self.write("tex/old.png", b"old" * 100)
        new = self.write("tex/new.png", b"new" * 200)
        FakeFarm.stored[hashlib.sha256(b"old" * 100).hexdigest()] = b"old" * 100
        task = self.submission([old, new], blend)
        task.run()
        self.assertIsNone(task.error)
        self.assertEqual(task.job["id"], "abc123")
        self.assertEqual((task.files_uploaded, task.uploaded_bytes, task.reused_bytes), (1, 600, 300))
        methods = [(r["method"], r["path"]) for r in FakeFarm.requests]
        self.assertEqual(methods, [
            ("GET", "/api/workers"), ("POST", "/api/projects"),
            ("PUT", "/api/files/" + hashlib.sha256(b"new" * 200).hexdigest()), ("POST", "/api/jobs"),
        ])
        manifest = json.loads(FakeFarm.requests[1]["body"])
        self.assertEqual((manifest["root"], manifest["main"]), (self.tmp.name, "main.blend"))
        self.assertEqual(FakeFarm.requests[2]["body"], b"new" * 200)
        self.assertEqual(FakeFarm.requests[2]["headers"]["Content-Type"], "application/octet-stream")
        parts = parse_multipart(FakeFarm.requests[3]["headers"]["Content-Type"], FakeFarm.requests[3]["body"])
        self.assertEqual(parts["project"], (None, b"e" * 64))
        self.assertEqual(parts["file"][0], "main.blend")
        # One progress bar over the new file and the .blend.
        self.assertEqual((task.sent, task.total), (600 + 1012, 600 + 1012))
        self.assertFalse(os.path.exists(task.workdir), "the temporary copy was left behind")
        # Sent again: nothing but the manifest and the .blend.
        FakeFarm.requests = []
        again = self.submission([old, new], blend)
        again.run()
        self.assertEqual((again.files_uploaded, again.uploaded_bytes, again.reused_bytes), (0, 0, 900))
        self.assertEqual([r["method"] for r in FakeFarm.requests], ["GET", "POST", "POST"])

    def test_the_farms_refusal_reads_as_its_words(self):
        blend = self.write("main.blend", b"BLENDER-v304")
        texture = self.write("tex/a.png", b"a")
        FakeFarm.reply = (400, "application/json", json.dumps({"code": "INVALID_PROJECT", "error": '"a" is listed twice'}).encode())
        task = self.submission([texture], blend)
        task.run()
        self.assertIsNone(task.job)
        self.assertEqual(task.error, 'The farm refused the project: "a" is listed twice (HTTP 400)')
        self.assertEqual(task.status_text(), f"Failed: {task.error}")


class HttpsFarmTest(unittest.TestCase):
    """The same fake farm behind TLS with a self-signed certificate."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.cert, key = make_certificate(cls.dir.name, "farm")
        cls.other_cert, _ = make_certificate(cls.dir.name, "other")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cls.cert, key)
        cls.server = ThreadingHTTPServer(("127.0.0.1", 0), FakeFarm)
        cls.server.socket = context.wrap_socket(cls.server.socket, server_side=True)
        cls.address = f"https://127.0.0.1:{cls.server.server_address[1]}"
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()
        cls.dir.cleanup()

    def setUp(self):
        FakeFarm.requests = []
        FakeFarm.reply = None

    def refused(self, trust, address=None):
        with self.assertRaises(farm_client.FarmError) as caught:
            farm_client.check_farm(address or self.address, "right-token", timeout=5, trust=trust)
        self.assertEqual(FakeFarm.requests, [], "a request (and its token) reached the farm")
        return str(caught.exception)

    def test_the_farms_ca_file_is_trusted(self):
        trust = farm_client.TlsTrust(ca_file=self.cert)
        workers = farm_client.check_farm(self.address, "right-token", trust=trust)
        self.assertEqual(len(workers), 2)
        self.assertEqual(farm_client.get_job(self.address, "right-token", "abc123", trust=trust)["id"], "abc123")
        watcher = submission.JobWatcher(self.address, "right-token", {"id": "abc123", "state": "probing"}, trust)
        watcher.refresh()
        self.assertEqual(watcher.text, "rendering: 5/10 frames done")

    def test_a_pinned_fingerprint_is_trusted_with_or_without_colons(self):
        digits = fingerprint_of(self.cert)
        with_colons = ":".join(digits[i:i + 2] for i in range(0, 64, 2)).upper()
        for text in (digits, with_colons, "sha256//" + digits):
            trust = farm_client.TlsTrust(fingerprint=text)
            self.assertEqual(len(farm_client.check_farm(self.address, "right-token", trust=trust)), 2, text)
        path = os.path.join(self.dir.name, "scene.blend")
        with open(path, "wb") as handle:
            handle.write(b"BLENDER-v304" + bytes(1000))
        job = farm_client.submit_job(self.address, "right-token", path, {"frames": "1"}, trust=farm_client.TlsTrust(fingerprint=digits))
        self.assertEqual(job["id"], "abc123")
        self.assertEqual(FakeFarm.requests[-1]["received"], FakeFarm.requests[-1]["length"])

    def test_a_wrong_fingerprint_is_refused_before_anything_is_sent(self):
        wrong = fingerprint_of(self.other_cert)
        message = self.refused(farm_client.TlsTrust(fingerprint=wrong))
        self.assertIn("the farm's certificate has fingerprint " + farm_client._shown(fingerprint_of(self.cert)), message)
        self.assertIn("expected " + farm_client._shown(wrong), message)
        self.assertIn("Nothing was sent", message)

    def test_a_certificate_nobody_vouches_for_is_refused(self):
        self.assertIn("its certificate is not trusted", self.refused(None))
        self.assertIn("its certificate is not trusted", self.refused(farm_client.TlsTrust(ca_file=self.other_cert)))

    def test_trust_settings_need_an_https_address(self):
        message = self.refused(farm_client.TlsTrust(ca_file=self.cert), self.address.replace("https:", "http:"))
        self.assertIn("is not https://", message)

    def test_bad_trust_settings_read_plainly(self):
        with self.assertRaises(farm_client.FarmError) as caught:
            farm_client.TlsTrust(fingerprint="12:34")
        self.assertIn("is not a SHA-256 certificate fingerprint", str(caught.exception))
        missing = os.path.join(self.dir.name, "missing.pem")
        self.assertIn(f"Cannot use the CA file {missing}", self.refused(farm_client.TlsTrust(ca_file=missing)))


if __name__ == "__main__":
    unittest.main()
