"""A real Orthanc server (Debian's ``/usr/sbin/Orthanc``) on free ports for the tests, and its REST API."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from queue_support import free_port, wait_until

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGINS = Path("/usr/share/orthanc/plugins")
DICOMWEB_PLUGIN = PLUGINS / "libOrthancDicomWeb.so"
PYTHON_PLUGIN = PLUGINS / "libOrthancPython.so"


class OrthancServer:
    """Orthanc with the DICOMweb plugin (and the Python plugin running ``python_script``), storage in ``workdir``."""

    def __init__(self, workdir: Path, *, aet: str = "ORTHANC", python_script: Path | None = None,
                 modalities: dict[str, list[Any]] | None = None, env: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None, users: dict[str, str] | None = None) -> None:
        """``users``: user name -> password; turns HTTP authentication on (REST calls use the first user)."""
        self.workdir = Path(workdir)
        self.users = users or {}
        self._aet = aet
        self.python_script = python_script
        self.modalities = modalities or {}
        self.env = env or {}
        self.extra = extra or {}
        self.http_port = 0
        self._dicom_port = 0
        self.log = self.workdir / "orthanc.log"
        self.proc: subprocess.Popen | None = None

    @property
    def aet(self) -> str:
        return self._aet

    @property
    def dicom_port(self) -> int:
        return self._dicom_port

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.http_url}/dicom-web"

    def config(self) -> dict[str, Any]:
        plugins = [str(DICOMWEB_PLUGIN)] + ([str(PYTHON_PLUGIN)] if self.python_script else [])
        config: dict[str, Any] = {
            "Name": self._aet, "DicomAet": self._aet, "HttpPort": self.http_port, "DicomPort": self._dicom_port,
            "StorageDirectory": str(self.workdir / "storage"), "IndexDirectory": str(self.workdir / "index"),
            "RemoteAccessAllowed": False, "AuthenticationEnabled": bool(self.users), "StableAge": 2,
            "DicomModalities": self.modalities, "Plugins": plugins,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        if self.users:
            config["RegisteredUsers"] = self.users
        if self.python_script:
            config |= {"PythonScript": str(self.python_script), "PythonVerbose": False}
        return config | self.extra

    def start(self, timeout_s: float = 30.0, keep_ports: bool = False) -> OrthancServer:
        """Start on free ports (``keep_ports``: the ports of the previous start, for a restart)."""
        for name in ("storage", "index"):
            (self.workdir / name).mkdir(parents=True, exist_ok=True)
        if not (keep_ports and self.http_port):
            self.http_port, self._dicom_port = free_port(), free_port()
        path = self.workdir / "orthanc.json"
        path.write_text(json.dumps(self.config(), indent=2))
        out = open(self.log, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen([ORTHANC, "--verbose", str(path)], stdout=out, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, **self.env), start_new_session=True)
        out.close()

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with code {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            try:
                return bool(self.get("/system"))
            except (urllib.error.URLError, ConnectionError):
                return False

        wait_until(ready, timeout_s, poll_s=0.2, what=f"Orthanc on port {self.http_port}")
        return self

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> OrthancServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- REST ----------------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/octet-stream") -> bytes:
        req = urllib.request.Request(self.http_url + path, data=body, method=method)
        if self.users:
            user, password = next(iter(self.users.items()))
            req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
        if body is not None:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.read()

    def get(self, path: str) -> Any:
        return json.loads(self.request("GET", path))

    def post(self, path: str, body: bytes | str, content_type: str = "text/plain") -> Any:
        data = body.encode() if isinstance(body, str) else body
        return json.loads(self.request("POST", path, data, content_type))

    def upload(self, path: Path) -> dict[str, Any]:
        return self.post("/instances", Path(path).read_bytes(), "application/dicom")

    def instances(self) -> list[str]:
        return self.get("/instances")

    def instance_tags(self, instance_id: str) -> dict[str, Any]:
        return self.get(f"/instances/{instance_id}/simplified-tags")

    def instance_file(self, instance_id: str) -> bytes:
        return self.request("GET", f"/instances/{instance_id}/file")

    def study_instances(self, study_instance_uid: str) -> list[dict[str, Any]]:
        """The instances of the study with this StudyInstanceUID (Orthanc's expanded records), [] if none."""
        found = self.post("/tools/lookup", study_instance_uid)
        studies = [f["ID"] for f in found if f.get("Type") == "Study"]
        return [i for s in studies for i in self.get(f"/studies/{s}/instances")]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
