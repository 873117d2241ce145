"""Serving the lab to a class (issue 11, item 4): the served commands, uploads and the session's folder.

* ``make lab`` listens on localhost only; ``scripts/serve_class.sh`` (``make class``) refuses to start
  without an explicit websocket origin, then refuses every other origin and, with ``AUTH``, asks for
  Panel's basic-authentication login.  Both are started here as real servers on 127.0.0.1 (no
  session is opened: the origin and login checks happen before one exists).  ``make class`` hands the
  per-session limits (``MAX_SITES``…, app/limits.py) to the server, or refuses to start naming a bad one.
* Uploads (the lab's Load): size-limited with a message naming the limit (in ``load_run_file`` and
  on the server while the browser's chunks arrive), parsed without pickle, refused with a reason
  and no traceback, and never written anywhere but a file named by the session inside its folder.
* The session's folder goes when the session ends, after its worker can no longer write there.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import socket
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from conftest import TINY as SUITE_TINY
from conftest import dying_with_this_process, poll_until, tick_until

from app.export import load_run_file, run_json
from app.upload import CHUNK_BYTES, SessionFolder, display_name
from nqs_core.events import StepRecord
from nqs_core.settings import RunSettings

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "serve_class.sh"
MB = 1024 * 1024
# the suite's small run (its programs come from the compilation cache); sign given: the lab's default preset has
# Marshall's prior
TINY = dict(SUITE_TINY, sign="none")


# ----- serving ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(command: list[str], port: int, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """Start a server command, wait until ``port`` answers on 127.0.0.1, stop it afterwards."""
    with open(log, "wb") as out:
        # NQS_WARM=0: the served lab's background warm-up (app/warm_start.py) is tested in test_warm.py
        proc = subprocess.Popen(dying_with_this_process(command), cwd=ROOT,
                                env={**os.environ, "NQS_WARM": "0", **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        def listening() -> bool:
            assert proc.poll() is None, f"the server exited ({proc.returncode}): {log.read_text()[-2000:]}"
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        poll_until(lambda: None, listening, 120, f"the server on port {port}")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None,
            body: str | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    if response.status != 101:  # an accepted websocket has no body to read
        response.read()
    conn.close()
    return response


def websocket_status(port: int, origin: str, cookie: str = "") -> int:
    """HTTP status of a websocket handshake to the app from a page at ``origin`` (101: accepted)."""
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": origin}
    if cookie:
        headers["Cookie"] = cookie
    return request(port, "GET", "/app/ws", headers).status


def login_cookie(port: int, user: str, password: str) -> str:
    """The ``user`` cookie Panel's login form sets ('' when the login is refused)."""
    response = request(port, "POST", "/login", {"Content-Type": "application/x-www-form-urlencoded"},
                       f"username={user}&password={password}")
    found = re.search(r'(?<![a-z_])user=("[^"]*"|[^;]+)', " ".join(response.headers.get_all("Set-Cookie") or []))
    return f"user={found.group(1)}" if found else ""


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of the sockets listening on ``port``."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                out.add(address)
    return out


def serve_class(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT)], cwd=ROOT, env={**os.environ, "NQS_WARM": "0", **env}, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("origin, reason", [
    ("", "without an allowed origin"), ("*", "wildcard"), ("*.example.edu:5006", "wildcard"),
    ("http://lab.example.edu:5006", "without the scheme"), ("lab example:5006", "is not host[:port]")])
def test_a_class_is_not_served_without_an_explicit_origin(origin: str, reason: str) -> None:
    done = serve_class({"ORIGIN": origin, "ADDRESS": "127.0.0.1", "PORT": str(free_port())})
    assert done.returncode == 2 and reason in done.stderr, done.stderr
    assert "Bokeh app running" not in done.stdout + done.stderr


def test_a_class_server_accepts_only_its_origin_and_asks_for_the_password(tmp_path: Path) -> None:
    port = free_port()
    env = {"ORIGIN": f"localhost:{port}", "ADDRESS": "127.0.0.1", "AUTH": "classroom-pw",
           "BOKEH_ALLOW_WS_ORIGIN": "*"}  # a permissive environment must not widen ORIGIN
    with serving([str(SCRIPT)], port, env, tmp_path / "server.log"):
        assert listening_addresses(port) == {"0100007F"}  # ADDRESS: 127.0.0.1 for the test
        page = request(port, "GET", "/app")
        assert page.status == 302 and "login" in page.headers["Location"]
        assert login_cookie(port, "ada", "wrong") == ""
        cookie = login_cookie(port, "ada", "classroom-pw")
        assert cookie
        assert request(port, "GET", "/app", {"Cookie": cookie}).status == 200  # a session for a logged-in student
        assert websocket_status(port, f"http://evil.example:{port}", cookie) == 403
        assert websocket_status(port, f"http://localhost:{port}", cookie) == 101
        assert websocket_status(port, f"http://localhost:{port}") != 101  # not logged in
    log = (tmp_path / "server.log").read_text()
    assert "Refusing websocket connection from Origin 'http://evil.example" in log
    assert "websocket_max_message_size set to 8388608" in log
    assert "classroom-pw" not in log


def test_a_class_server_reads_its_users_from_a_json_file(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"ada": "lovelace", "alan": "turing"}))
    port = free_port()
    with serving([str(SCRIPT)], port, {"ORIGIN": f"127.0.0.1:{port}", "ADDRESS": "127.0.0.1",
                                       "AUTH": str(users)}, tmp_path / "server.log"):
        assert login_cookie(port, "ada", "lovelace") and login_cookie(port, "alan", "turing")
        assert login_cookie(port, "ada", "turing") == "" and login_cookie(port, "eve", "lovelace") == ""
        assert websocket_status(port, f"http://localhost:{port}", login_cookie(port, "ada", "lovelace")) == 403


def python_without_server(tmp_path: Path) -> dict[str, str]:
    """serve_class.sh's python (NQS_SERVE_PYTHON) for everything but the server, which it replaces by
    writing the limits it was started with to ``served.env``."""
    fake = tmp_path / "python"
    limits = "^NQS_MAX_(SITES|SAMPLES|PARAMETERS)="
    fake.write_text(f'#!/usr/bin/env bash\nif [ "$1 $2" = "-m panel" ]; then env | grep -E "{limits}" | sort '
                    f'> "{tmp_path}/served.env"; exit 0; fi\nexec "{sys.executable}" "$@"\n')
    fake.chmod(0o755)
    return {"NQS_SERVE_PYTHON": str(fake), "ORIGIN": "localhost:5006"}


def test_a_class_server_gets_its_limits_or_refuses_a_bad_one(tmp_path: Path) -> None:
    from app.limits import CLASS_DEFAULTS

    env = python_without_server(tmp_path)
    done = serve_class({**env, "NQS_MAX_SITES": "36", "NQS_MAX_SAMPLES": "none", "NQS_MAX_PARAMETERS": ""})
    assert done.returncode == 0, done.stderr
    served = (tmp_path / "served.env").read_text().split()
    assert served == [f"NQS_MAX_PARAMETERS={CLASS_DEFAULTS['NQS_MAX_PARAMETERS']}", "NQS_MAX_SAMPLES=none",
                      "NQS_MAX_SITES=36"]  # unset: the class default, explicitly
    assert "per session: NQS_MAX_SITES=36" in done.stderr
    (tmp_path / "served.env").unlink()
    done = serve_class({**env, "NQS_MAX_SAMPLES": "many"})
    assert done.returncode == 2 and "NQS_MAX_SAMPLES='many' is not a whole number >= 1" in done.stderr
    assert not (tmp_path / "served.env").exists()


def test_make_class_passes_the_limits(tmp_path: Path) -> None:
    """``make class MAX_SITES=16 …`` (read from ``make -n``, without its setup step; make exports its
    command-line variables to the recipe) starts the server with those limits."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    dry = subprocess.run(["make", "--no-print-directory", "-n", "class"], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True)
    command = " ".join(line.rstrip("\\").strip() for line in dry.stdout.splitlines() if "bootstrap" not in line)
    limits = {"MAX_SITES": "16", "MAX_SAMPLES": "512", "MAX_PARAMETERS": "none", "NQS_MAX_SITES": "99"}
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, env={**env, **python_without_server(tmp_path), **limits},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "served.env").read_text().split() == [
        "NQS_MAX_PARAMETERS=none", "NQS_MAX_SAMPLES=512", "NQS_MAX_SITES=16"]  # MAX_SITES= wins over NQS_MAX_SITES


def test_make_lab_serves_this_machine_only(tmp_path: Path) -> None:
    """The command ``make lab`` runs (read from ``make -n``, without its setup step) listens on the
    loopback address and accepts the websocket only from pages served by localhost."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # under `make test`
    dry = subprocess.run(["make", "--no-print-directory", "-n", "lab", f"PORT={port}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    command = " ".join(line.rstrip("\\").strip() for line in dry.stdout.splitlines() if "bootstrap" not in line)
    assert "panel serve app" in command
    with serving(["bash", "-c", f"exec {command}"], port, {}, tmp_path / "server.log"):
        assert listening_addresses(port) == {"0100007F"}
        assert websocket_status(port, f"http://localhost:{port}") == 101
        assert websocket_status(port, f"http://127.0.0.1:{port}") == 101
        assert websocket_status(port, f"http://evil.example:{port}") == 403
        assert websocket_status(port, "http://localhost:1") == 403


# ----- uploads ----------------------------------------------------------------------------------
def exported_run(steps: int = 3) -> bytes:
    """A run as the lab exports it (settings, history, summary), made without running VMC."""
    history = [StepRecord(step=i, energy=-2.5 - 0.1 * i, error=0.01, variance=0.1, acceptance=0.5, r_hat=1.0,
                          tau=1.0, grad_norm=0.1, v_score=0.01, seconds=0.01) for i in range(steps)]
    return run_json(RunSettings(**TINY, steps=steps), history, None, {"final_energy": -2.7, "phase": "done"}).encode()


def checkpoint_bytes(tmp_path: Path) -> bytes:
    """An engine checkpoint of TINY's initial state (nothing compiled but the initialisation)."""
    from nqs_core.checkpoint import save_checkpoint
    from nqs_core.vmc import VMC

    settings = RunSettings(**TINY, steps=5)
    path = save_checkpoint(tmp_path / "made.npz", VMC(settings).init(), settings.to_dict(), [], {"phase": "done"})
    return path.read_bytes()


def browser_upload(widget: Any, name: str, data: bytes) -> None:
    """The messages the page sends for one file (panel-material-ui's chunked upload protocol)."""
    widget._handle_msg({"status": "initializing", "type": "status"})
    chunks = [data[i:i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
    for i, chunk in enumerate(chunks, start=1):
        widget._handle_msg({"type": "status", "status": "upload_event", "chunk": i, "data": chunk, "name": name,
                            "total_chunks": len(chunks), "mime_type": "application/json"})
    widget._handle_msg({"status": "finished", "type": "status"})


def test_an_upload_over_the_limit_is_refused_naming_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.lab import Lab

    monkeypatch.setenv("NQS_MAX_UPLOAD_MB", "1")
    big = exported_run()[:-1] + b" " * MB + b"}"
    with pytest.raises(ValueError, match=r"big\.json \(1\.0 MB\) is larger than the 1\.0 MB .* NQS_MAX_UPLOAD_MB"):
        load_run_file("big.json", big)

    lab = Lab()
    assert lab.upload.max_file_size == MB  # the page refuses it before sending
    lab.load_bytes("big.json", big, background=False)
    assert "Could not load big.json" in lab.message.object and "larger than the 1.0 MB" in lab.message.object
    assert "Traceback" not in lab.message.object and lab.history == []

    # a client that ignores the page's limit: its chunks are dropped on the server past 1 MB
    browser_upload(lab.upload, "big.json", big + b" " * (3 * CHUNK_BYTES))
    assert lab.upload.value is None and lab.upload._file_buffer == {} and not lab.loading
    assert "Not loaded: big.json is larger than the 1.0 MB" in lab.message.object
    # the page's own refusal (over max_file_size) is said in the lab too, not raised on the server
    lab.upload._handle_msg({"status": "error", "type": "status",
                            "error": 'File "big.json" (4 MB) exceeds maximum file size of 1 MB'})
    assert "exceeds maximum file size of 1 MB" in lab.message.object

    # one under the limit goes through the same widget and is loaded
    browser_upload(lab.upload, "small.json", exported_run())
    tick_until(lab, lambda: len(lab.history) == 3, 60, "the uploaded run")
    assert "Loaded a run of 3 steps (small.json" in lab.message.object


def object_array_npz(marker: Path) -> bytes:
    """An .npz whose 'meta' is a pickled object that would create ``marker`` if it were unpickled."""

    class Payload:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    buf = io.BytesIO()
    array = np.empty(1, dtype=object)
    array[0] = Payload()
    np.savez(buf, meta=array)
    assert b"touch" in buf.getvalue()  # the pickle is really in the file
    return buf.getvalue()


def zip_bomb(unpacked: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("meta.npy", b"\0" * unpacked)
    return buf.getvalue()


def run_with(**changes: Any) -> bytes:
    data = json.loads(exported_run())
    for path, value in changes.items():
        target = data
        *head, last = path.split("__")
        for key in head:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[int(last) if isinstance(target, list) else last] = value
    return json.dumps(data).encode()


MALFORMED = [
    ("run.json", b"{not json", "not a JSON file"),
    ("run.json", b"\xff\xfe\x00garbage", "neither a run (JSON) nor a checkpoint"),
    ("run.json", b"[1, 2, 3]", "needs 'settings' and 'history'"),
    ("deep.json", b"[" * 200_000, "nested too deeply"),
    ("run.json", run_with(settings=[1, 2]), "settings are not an object"),
    ("run.json", run_with(settings__colour="red"), "unknown setting 'colour'"),
    ("run.json", run_with(settings__L=10_000), "L"),
    ("run.json", run_with(history="many"), "history is not a list"),
    ("run.json", run_with(history__1__energy="low"), "history entry 1: energy is str 'low', not a number"),
    ("run.json", run_with(history__0__step=-3), "history entry 0: step"),
    ("run.json", run_with(history__2__translation_eigenvalue=[1]), "translation_eigenvalue is not a pair"),
    ("run.json", run_with(reference={"energy": "x"}), "reference's energy is str"),
    ("run.json", run_with(reference={"energy": -1.0, "sector_energies": [{"energy": 1, "k_over_pi": "pi"}]}),
     "momentum is not a list"),
    ("run.json", run_with(summary={"final_energy": [1]}), "summary's final_energy is list"),
    ("empty.npz", b"PK\x05\x06" + bytes(18), "cannot read checkpoint empty.npz"),
    ("bomb.npz", zip_bomb(40 * MB), "unpacks to 40 MB, more than the 32 MB"),
]


@pytest.mark.parametrize("filename, data, reason", MALFORMED, ids=[f"{i}-{m[2][:24]}" for i, m in enumerate(MALFORMED)])
def test_a_malformed_upload_is_refused_with_its_reason(filename: str, data: bytes, reason: str) -> None:
    with pytest.raises(ValueError) as refused:
        load_run_file(filename, data, pictures=False)
    assert reason in str(refused.value) and "Traceback" not in str(refused.value)


def test_a_pickled_upload_is_never_unpickled(tmp_path: Path) -> None:
    from app.lab import Lab

    marker = tmp_path / "unpickled"
    data = object_array_npz(marker)
    with pytest.raises(ValueError, match="holds pickled Python objects, which are never loaded"):
        load_run_file("evil.npz", data)
    lab = Lab()
    lab.load_bytes("evil.npz", data, background=False)
    lab.load_bytes("deep.json", b"[" * 200_000, background=False)  # a refusal after a refusal, still said
    assert "Could not load deep.json: not an exported NQS Lab run (its JSON is nested too deeply)" in lab.message.object
    assert not marker.exists() and lab.history == [] and "Traceback" not in lab.message.object


@pytest.mark.parametrize("sent_name", ["../../../evil.npz", "/tmp/evil.npz", "..\\..\\evil.npz",
                                       "a/../../../evil.npz", "evil\x00.npz\n"])
def test_an_uploaded_name_is_never_a_path(sent_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint is read from a file the session names inside its own folder; the name the
    browser sent is only shown, shortened to its last component."""
    import nqs_core.checkpoint as checkpoint

    data = checkpoint_bytes(tmp_path)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))  # every temporary file of this test lands here
    folder = SessionFolder()
    read_from: list[Path] = []
    real = checkpoint.load_checkpoint
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda path: (read_from.append(Path(path)), real(path))[1])

    loaded = load_run_file(sent_name, data, pictures=False, folder=folder)
    assert loaded.kind == "checkpoint" and loaded.settings == RunSettings(**TINY, steps=5)
    (path,) = read_from
    assert path.parent == folder.path and "evil" not in path.name
    assert list(temp.rglob("*")) == [folder.path]  # nothing else written, the read file removed
    target = os.path.normpath(os.path.join(folder.path, sent_name.replace("\\", "/").replace("\x00", "")))
    assert not Path(target).exists() and not Path("/tmp/evil.npz").exists()  # where the name points
    assert display_name(sent_name) == "evil.npz"
    with pytest.raises(ValueError, match="cannot read checkpoint evil.npz"):
        load_run_file(sent_name, b"PK\x05\x06" + bytes(18), folder=folder)  # refused, named without its path
    assert list(temp.rglob("*")) == [folder.path]


# ----- the session's folder ---------------------------------------------------------------------
def test_the_session_folder_goes_when_a_served_session_ends() -> None:
    """A real session (Panel's server, one HTTP page load, no browser): Bokeh discards it once no
    websocket connects, the hook registered by ``Lab.start_session`` runs and removes its folder."""
    import panel as pn

    from app.lab import Lab

    made: list[Lab] = []

    def page() -> Any:
        lab = Lab()
        lab.start_session()
        (lab.workdir / "checkpoint-1.npz").write_bytes(b"x")  # a file of the session (before it can end)
        made.append(lab)
        return lab.page

    port = free_port()
    server = pn.serve(page, port=port, address="127.0.0.1", threaded=True, show=False,
                      unused_session_lifetime_milliseconds=300, check_unused_sessions_milliseconds=100)
    try:
        poll_until(lambda: None, lambda: _answers(port), 60, "the server")
        assert request(port, "GET", "/").status == 200
        (lab,) = made
        assert lab.folder.removed.wait(60), "the session's folder was not removed after the session ended"
        assert not lab.workdir.exists() and lab._closed
    finally:
        server.stop()
        pn.state.kill_all_servers()


def _answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_the_session_folder_goes_only_after_its_worker_stopped_writing() -> None:
    """A running worker writes checkpoints into the folder: the session's end removes the folder
    once the worker has ended, so no late checkpoint re-creates it."""
    from app.lab import Lab

    lab = Lab()
    lab.settings.param.update(preset="custom", **TINY, steps=100_000)
    lab._on_run()
    tick_until(lab, lambda: len(lab.history) >= 2, 180, "the first steps")
    workers = lab.runner.threads()
    assert workers and lab.workdir.exists()
    lab._on_session_destroyed(None)  # the hook Lab.start_session registers with pn.state.on_session_destroyed
    assert lab.folder.removed.wait(120), "the folder was never removed"
    assert not any(t.is_alive() for t in workers)
    assert not lab.workdir.exists()
