"""The command blocks of README "## Connect to your PACS" and of deploy/README.md, run as written.

Every fenced block of those two texts must be marked ``<!-- doc-test: NAME -->`` and NAME must be one of
:data:`RUNS`: a new or renamed block without a run here fails. Blocks are taken from the files at test
time, and only hosts, ports, paths and secrets are replaced (:func:`substituted` fails if a placeholder it
expects is gone, so a changed command cannot slip past a stale replacement).

- Real: the Orthanc blocks (Debian's Orthanc 1.10 with the shipped ``orthanc.json``, authentication on), the
  listener commands and ``storescu`` (DCMTK), ``curl``/``jq`` against Orthanc's REST API, ``pull`` over
  DICOMweb with credentials, the plugin's configuration and default route; one Celery worker on Redis
  (db ``SKIN_TEST_REDIS_DB``) scores for all of them. Every flow ends with its SRs stored in Orthanc.
- Offline checks of blocks that need a container engine, a cluster or root: ``docker compose`` ``up``/``ps``
  become ``config`` on a copy of ``deploy/``, ``kubectl`` runs ``--dry-run=client``/``kustomize``, ``sudo``
  writes into a scratch root (units, directories, the Redis lines, then a real ``redis-server`` on them).
- Not run: KEDA's Helm chart (no ``helm`` or cluster here); the block may hold ``helm`` lines only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pydicom
import pytest
import redis
import yaml
from orthanc_support import OrthancServer
from queue_support import Worker, free_port, listening_addresses, wait_until, worker_settings
from test_net_listener_whole_study import mr_of

from skin_plugin.sr.numbering import SR_SERIES_NUMBER

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DEPLOY_README = ROOT / "deploy" / "README.md"
SHIPPED_ORTHANC = json.loads((ROOT / "deploy" / "orthanc" / "orthanc.json").read_text())
PLUGIN = ROOT / "deploy" / "orthanc" / "skin_plugin_orthanc.py"
BIN = Path(sys.executable).parent
SAMPLES = ROOT / "tests" / "fixtures" / "samples"
USER, PASSWORD = "skin", "doc-test-secret-3141"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"

MARKED = re.compile(r"^<!-- doc-test: ([a-z0-9-]+) -->\n```(\w+)\n(.*?)^```$", re.M | re.S)
RUNS = {  # block -> where it is run
    "orthanc-modality": "test_connect_to_your_pacs_commands_deliver_srs",
    "listen-for-orthanc": "test_connect_to_your_pacs_commands_deliver_srs",
    "orthanc-route-study": "test_connect_to_your_pacs_commands_deliver_srs",
    "listen-for-pacs": "test_connect_to_your_pacs_commands_deliver_srs",
    "storescu": "test_connect_to_your_pacs_commands_deliver_srs",
    "pull": "test_connect_to_your_pacs_commands_deliver_srs",
    "orthanc-plugin-config": "test_connect_to_your_pacs_commands_deliver_srs",
    "plugin-worker-env": "test_connect_to_your_pacs_commands_deliver_srs",
    "compose": "test_compose_block",
    "kubernetes": "test_kubernetes_block",
    "systemd": "test_systemd_block",
    "redis": "test_redis_block",
    "keda": "test_keda_block_is_helm_only",
}


def section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def documents() -> dict[str, str]:
    return {"README.md ## Connect to your PACS": section(README.read_text(), "## Connect to your PACS"),
            "deploy/README.md": DEPLOY_README.read_text()}


def blocks() -> dict[str, tuple[str, str]]:
    """name -> (language, body) of every marked block of both documents."""
    found: dict[str, tuple[str, str]] = {}
    for text in documents().values():
        for name, lang, body in MARKED.findall(text):
            assert name not in found, f"two blocks named {name}"
            found[name] = (lang, body)
    return found


def substituted(body: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in body, f"the documented block no longer holds {old!r}:\n{body}"
        body = body.replace(old, new)
    return body


def bash(script: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def shell_env(**extra: str) -> dict[str, str]:
    """This environment without SKIN_* variables; PATH finds ``skin-plugin`` in this venv, but DCMTK's
    ``storescu`` ahead of the one pynetdicom installs there (the README says which one it means)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKIN_")}
    system_path = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if Path(p) != BIN)
    dcmtk = Path(shutil.which("storescu", path=system_path) or "/usr/bin/storescu").parent
    return {**env, "PATH": f"{dcmtk}:{BIN}:{system_path}", **extra}


def test_every_command_block_is_marked_and_run():
    for where, text in documents().items():
        fences = re.findall(r"^```", text, re.M)
        assert len(fences) == 2 * len(MARKED.findall(text)), f"{where}: a fenced block without <!-- doc-test -->"
    assert set(blocks()) == set(RUNS)


def test_documented_options_exist():
    """Every ``skin-plugin SUBCOMMAND ... --option`` in both READMEs (code spans and blocks, any section) names
    a real subcommand and option (the README once said ``to-dicom --identities-csv`` for ``--identities``)."""
    import typer

    from skin_plugin.cli import app

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    options = {name: {o for p in c.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
               for name, c in commands.items()}
    wrong = []
    for doc in (README, DEPLOY_README):
        for m in re.finditer(r"(?<!-n )(?<![\w/-])skin-plugin ([a-z][a-z-]*)((?:[^`\n]|\\\n)*)", doc.read_text()):
            sub, rest = m.groups()
            if sub not in options:
                wrong.append(f"{doc.name}: no subcommand {sub!r} in {m.group(0)[:80]!r}")
            else:
                wrong += [f"{doc.name}: {sub} has no {o}" for o in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest)
                          if o not in options[sub]]
    assert not wrong, "\n".join(wrong)


# --- the real round trips ----------------------------------------------------------------------


def _assignments(body: str) -> dict[str, str]:
    """``NAME=value`` pairs of a block (``export`` lines included)."""
    return dict(re.findall(r"\b(SKIN_[A-Z_]+)=(\S+)", body))


def _sr_series(orthanc: OrthancServer, study_uid: str) -> list[tuple[int, int]]:
    """(SeriesNumber, InstanceNumber) of the SRs Orthanc holds in the study."""
    found = []
    for instance in orthanc.study_instances(study_uid):
        tags = orthanc.instance_tags(instance["ID"])
        if tags.get("SOPClassUID") == COMPREHENSIVE_SR:
            found.append((int(tags["SeriesNumber"]), int(tags["InstanceNumber"])))
    return sorted(found)


def _convert(tmp_path: Path) -> dict[str, list[Path]]:
    """The sample photos as four test studies, through ``to-dicom --identities`` (README, inputs)."""
    studies = {"route": (2, "20261001"), "push": (2, "20261002"), "pull": (1, "20261115"), "plugin": (2, "")}
    jpegs = sorted(SAMPLES.glob("*.jpg"))
    rows, names, i = ["file,patient_name,patient_id,accession_number,study_date"], {}, 0
    for study, (count, date) in studies.items():
        for jpeg in jpegs[i:i + count]:
            rows.append(f"{jpeg.name},DOC^{study.upper()},DOC-{study},ACC-DOC-{study},{date}")
            names[jpeg.name] = study
        i += count
    csv = tmp_path / "identities.csv"
    csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "dicom"
    proc = subprocess.run([str(BIN / "skin-plugin"), "to-dicom", *(str(j) for j in jpegs[:i]), "--out", str(out),
                           "--identities", str(csv)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    by_study: dict[str, list[Path]] = {s: [] for s in studies}
    for path in sorted(out.rglob("*.dcm")):
        by_study[str(pydicom.dcmread(path, stop_before_pixels=True).PatientID).removeprefix("DOC-")].append(path)
    assert [len(v) for v in by_study.values()] == [c for c, _ in studies.values()]
    return by_study


class _Background:
    """A documented long-running command (``exec``'d by bash), stopped by its pid."""

    def __init__(self, script: str, env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(["bash", "-c", f"exec {script}"], env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def wait_listening(self, port: int) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            return bool(listening_addresses(port))
        wait_until(up, 60, poll_s=0.2, what=f"listener on {port}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_connect_to_your_pacs_commands_deliver_srs(redis_url, tmp_path):
    """README: Orthanc routes a study to the listener, storescu pushes one, pull fetches one over DICOMweb;
    deploy/README: the plugin's configuration with the shipped (authenticated) Orthanc and its default route.
    Each study's SRs end up in its Orthanc, in the SR series (9000), numbered like their images."""
    docs = blocks()
    studies = _convert(tmp_path)
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    env = shell_env(SKIN_BROKER_URL=redis_url)
    shipped = {k: v for k, v in SHIPPED_ORTHANC.items() if k not in ("DicomPort", "StableAge", "DicomModalities")}
    assert shipped["AuthenticationEnabled"] is True  # what the docs say about the shipped configuration

    # the "PACS": an Orthanc as shipped, with the listener declared as the README says
    orthanc_port, pacs_port = free_port(), free_port()
    modality = json.loads("{" + substituted(docs["orthanc-modality"][1], {
        "scoring-host": "127.0.0.1", "11112": str(orthanc_port)}) + "}")
    pacs = OrthancServer(tmp_path / "pacs", users={USER: PASSWORD}, extra=shipped | {"StableAge": 1},
                         modalities=modality["DicomModalities"])
    # the plugin's Orthanc, configured by deploy/README's block
    plugin_config = json.loads(substituted(docs["orthanc-plugin-config"][1], {
        "/path/to/deploy/orthanc/skin_plugin_orthanc.py": str(PLUGIN), '"StableAge": 30': '"StableAge": 1'}))
    plugin_env = {"SKIN_BROKER_URL": redis_url, "SKIN_OUTPUT_DIR": str(tmp_path / "plugin-reports"),
                  "SKIN_SPOOL_DIR": str(tmp_path / "plugin-spool"),
                  "SKIN_PYTHONPATH": f"{ROOT}:{sysconfig.get_paths()['purelib']}"}
    plugin = OrthancServer(tmp_path / "plugin", users={USER: PASSWORD}, python_script=PLUGIN, env=plugin_env,
                           extra=shipped | plugin_config)
    # the workers' credentials: deploy/README (plugin's default route) and README (pull's STOW-RS route)
    worker_env = {}
    for name, file in (("plugin-worker-env", "/etc/skin-plugin/orthanc-password"),
                       ("pull", "/etc/skin-plugin/dicomweb-password")):
        for key, value in _assignments(docs[name][1]).items():
            value = value.replace(file, str(password_file))
            assert worker_env.setdefault(key, value) == value, f"{name}: {key} differs from another block"
    assert worker_env == {"SKIN_DICOMWEB_USERNAME": USER, "SKIN_DICOMWEB_PASSWORD_FILE": str(password_file)}
    worker = Worker(worker_settings(redis_url, output_dir=tmp_path / "worker"), concurrency=1, env=worker_env,
                    log=tmp_path / "worker.log")
    listeners: list[_Background] = []
    try:
        for server in (pacs, plugin):
            server.start()
        worker.start()
        listen_orthanc = substituted(docs["listen-for-orthanc"][1], {
            "--port 11112": f"--port {orthanc_port}", "0.0.0.0": "127.0.0.1",
            "/data/reports": str(tmp_path / "reports-orthanc"),
            "orthanc-host:4242": f"127.0.0.1:{pacs.dicom_port}"})
        listen_pacs = substituted(docs["listen-for-pacs"][1], {
            "--port 11112": f"--port {pacs_port}", "0.0.0.0": "127.0.0.1",
            "/data/reports": str(tmp_path / "reports-pacs"),
            "dicom://PACS_AET@pacs-host:104": f"dicom://ORTHANC@127.0.0.1:{pacs.dicom_port}"})
        for script, port, log in ((listen_orthanc, orthanc_port, "listen-orthanc.log"),
                                  (listen_pacs, pacs_port, "listen-pacs.log")):
            listeners.append(_Background(script, env, tmp_path / log))
            listeners[-1].wait_listening(port)

        # Orthanc routes a whole study (two photos and an MR image): uploaded first, then the README's curl
        for path in studies["route"] + studies["pull"] + [mr_of(studies["route"][0], tmp_path / "mr.dcm")]:
            pacs.upload(path)
        route_uid = str(pydicom.dcmread(studies["route"][0]).StudyInstanceUID)
        proc = bash(substituted(docs["orthanc-route-study"][1], {
            "http://orthanc-host:8042": pacs.http_url, "/etc/skin-plugin/orthanc-password": str(password_file)}),
            {**env, "STUDY_INSTANCE_UID": route_uid}, tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert json.loads(proc.stdout)["InstancesCount"] == 3  # the MR acknowledged and ignored (--accept-all-storage)

        # a modality pushes with storescu: the documented flags work, and without them the documented error
        push_dir = studies["push"][0].parent
        storescu = substituted(docs["storescu"][1], {
            "scoring-host 11112": f"127.0.0.1 {pacs_port}", "/path/to/study/": f"{push_dir}/"})
        bare = storescu.replace(" -R -xy", "")
        assert bare != storescu
        proc = bash(bare, env, tmp_path)
        documented_error = re.search(r"`(E: No presentation context for: [^`]+)`", section(
            README.read_text(), "## Connect to your PACS")).group(1)
        assert proc.returncode != 0 and documented_error in proc.stdout + proc.stderr, proc.stdout + proc.stderr
        proc = bash(storescu, env, tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr

        # pull over DICOMweb with credentials (only the study dated after --since is new)
        reports = tmp_path / "pulled"
        pull = substituted(docs["pull"][1], {
            "dicomweb+https://archive/dicom-web": f"dicomweb+{pacs.dicomweb_url}",
            "https://archive/dicom-web": pacs.dicomweb_url,
            "/etc/skin-plugin/dicomweb-password": str(password_file), "/data/reports": str(reports)})
        proc = bash(pull, env, tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr

        # the plugin's Orthanc receives a study; its default route (DICOMweb, authenticated) stores the SRs
        for path in studies["plugin"]:
            plugin.upload(path)

        one, two = [(SR_SERIES_NUMBER, 1)], [(SR_SERIES_NUMBER, 1), (SR_SERIES_NUMBER, 2)]  # 9000 by default
        expected = {  # Orthanc, study, SRs
            "route": (pacs, route_uid, two),
            "push": (pacs, str(pydicom.dcmread(studies["push"][0]).StudyInstanceUID), two),
            "pull": (pacs, str(pydicom.dcmread(studies["pull"][0]).StudyInstanceUID), one),
            "plugin": (plugin, str(pydicom.dcmread(studies["plugin"][0]).StudyInstanceUID), two),
        }
        missing = dict(expected)

        def all_delivered() -> bool:
            for flow, (server, uid, srs) in list(missing.items()):
                if _sr_series(server, uid) == srs:
                    del missing[flow]
            return not missing

        try:
            wait_until(all_delivered, 75, poll_s=0.5, what="the SRs of every flow")
        except TimeoutError:
            logs = [tmp_path / n for n in ("worker.log", "listen-orthanc.log", "listen-pacs.log")]
            tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in logs if p.exists())
            pytest.fail(f"no SRs for {sorted(missing)}: {[ _sr_series(s, u) for s, u, _ in missing.values()]}\n"
                        f"--- plugin orthanc\n{plugin.log_text()[-2000:]}\n{tails}")
    finally:
        for listener in listeners:
            listener.stop()
        worker.stop()
        for server in (pacs, plugin):
            server.stop()
    for log in ("listen-orthanc.log", "listen-pacs.log", "worker.log"):
        assert PASSWORD not in (tmp_path / log).read_text(errors="replace")


# --- blocks that need a container engine, a cluster or root: same files and arguments, offline checks ---


def test_compose_block(tmp_path):
    """``cp`` for real in a copy of deploy/; ``docker compose ... up``/``ps`` resolved with ``config``."""
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    compose = (["docker", "compose"] if subprocess.run(["docker", "compose", "version"], capture_output=True)
               .returncode == 0 else ["docker-compose"])
    shim = f"""docker() {{
  [ "$1" = compose ] || {{ echo "not a compose command: docker $*" >&2; return 99; }}
  shift; local args=()
  for a in "$@"; do case "$a" in up|ps) args+=(config --quiet); break;; *) args+=("$a");; esac; done
  {' '.join(compose)} "${{args[@]}}"
}}
"""
    proc = bash(shim + blocks()["compose"][1], shell_env(), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "deploy" / ".env").read_text() == (ROOT / "deploy" / ".env.example").read_text()


def test_kubernetes_block(tmp_path):
    """``apply -f`` a file of the kustomization, ``create secret`` with ``--dry-run=client``, ``apply -k`` with
    ``kustomize``, ``get`` kinds that the kustomization creates."""
    rendered = tmp_path / "rendered.yaml"
    shim = f"""kubectl() {{
  case "$*" in
    "apply -f "*) grep -qx "  - $(basename "$3")" "$(dirname "$3")/kustomization.yaml";;
    "apply -k "*) command kubectl kustomize "$3" > {rendered};;
    *" create secret "*) command kubectl "$@" --dry-run=client -o name;;
    *" get "*) echo "GET $*";;
    *) echo "unexpected: kubectl $*" >&2; return 99;;
  esac
}}
"""
    proc = bash(shim + blocks()["kubernetes"][1], shell_env(), ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "secret/skin-plugin-secrets" in proc.stdout
    objects = [o for o in yaml.safe_load_all(rendered.read_text()) if o]
    kinds = {(o["kind"], o["metadata"].get("namespace")) for o in objects}
    (get,) = re.findall(r"^GET -n (\S+) get (\S+)$", proc.stdout, re.M)
    aliases = {"scaledobject": "ScaledObject", "deploy": "Deployment", "pods": None}
    for kind in get[1].split(","):
        assert aliases[kind] is None or (aliases[kind], get[0]) in kinds, kind


SUDO_SHIM = """sudo() {
  echo "sudo $*" >> "$CALLS"
  case "$1" in
    install|tee)
      local cmd=$1 args=() skip=0; shift
      for a in "$@"; do
        if ((skip)); then skip=0; continue; fi
        case "$a" in -o|-g) skip=1;; /*) args+=("$FAKEROOT$a");; *) args+=("$a");; esac
      done
      command "$cmd" "${args[@]}";;
    *) : ;;  # useradd, venv, pip, apt, systemctl: recorded, checked by the test
  esac
}
sudoedit() { echo "sudoedit $*" >> "$CALLS"; test -f "$FAKEROOT$1"; }
"""


def _sudo_run(name: str, tmp_path: Path) -> tuple[Path, list[str]]:
    fake, calls = tmp_path / "root", tmp_path / "calls"
    (fake / "etc" / "systemd" / "system").mkdir(parents=True)
    (fake / "etc" / "redis").mkdir(parents=True)
    proc = bash(SUDO_SHIM + blocks()[name][1], shell_env(FAKEROOT=str(fake), CALLS=str(calls)), ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return fake, calls.read_text().splitlines()


def test_systemd_block(tmp_path):
    """The install lines run into a scratch root; then the units it installed name the user it creates, the
    env file and directories it installs, the venv it builds; every unit it enables is installed."""
    fake, calls = _sudo_run("systemd", tmp_path)
    (user_line,) = [c for c in calls if c.startswith("sudo useradd")]
    user = user_line.split()[-1]
    (venv_line,) = [c for c in calls if " -m venv " in c]
    venv = venv_line.split()[-1]
    assert (fake / "etc/skin-plugin/skin-plugin.env").read_text() == (
        ROOT / "deploy/systemd/skin-plugin.env.example").read_text()
    units = {p.name: p.read_text() for p in (fake / "etc/systemd/system").glob("*.service")}
    assert units and set(units) == {p.name for p in (ROOT / "deploy/systemd").glob("*.service")}
    for name, text in units.items():
        fields = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
        assert fields["User"] == user, name
        assert (fake / fields["EnvironmentFile"].lstrip("-/")).is_file(), name
        assert fields["ExecStart"].startswith(f"{venv}/bin/skin-plugin "), name
        for path in fields.get("ReadWritePaths", "").split():
            assert (fake / path.lstrip("/")).is_dir(), f"{name}: {path} not created by the block"
    enabled = [u for c in calls if c.startswith("sudo systemctl enable") for u in c.split()[4:]]
    assert enabled
    for unit in enabled:
        assert re.sub(r"@[^.]+\.service$", "@.service", unit) in units, unit


def test_redis_block(tmp_path):
    """The lines the block appends to redis.conf, given to a real redis-server: a password, no AOF, no RDB."""
    fake, calls = _sudo_run("redis", tmp_path)
    conf = fake / "etc/redis/redis.conf"
    password = re.search(r"^requirepass (\w+)$", conf.read_text(), re.M).group(1)
    assert len(password) == 64
    port = free_port()
    server = subprocess.Popen([shutil.which("redis-server") or "redis-server", str(conf), "--port", str(port),
                               "--bind", "127.0.0.1", "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, password=password)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False
        wait_until(up, 20, what="redis-server")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("save") == {"save": ""}
    finally:
        server.terminate()
        server.wait(10)
    assert any(c.startswith("sudo systemctl restart redis") for c in calls)


def test_keda_block_is_helm_only():
    """KEDA's own chart (a cluster prerequisite) is the one block not run: no helm and no cluster here."""
    lines = [line for line in blocks()["keda"][1].splitlines() if line.strip()]
    assert lines and all(line.startswith("helm ") for line in lines)
