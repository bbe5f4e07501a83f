"""CI: the package as a deployer installs it (`pip install .`, no test extras) really runs.

Run with the runtime-only venv's Python; uses the standard library only, so a
dependency missing from pyproject.toml cannot be supplied by this script.

1. `xinxibot demo` in an empty directory: the sandbox page answers 200 with its content.
2. `xinxibot init`, the config edited to a real group, coordinator, free port, secret and
   `api_url` of a fake OneBot HTTP API started here; `xinxibot doctor` passes against it;
   `xinxibot run` answers one signed `/帮助` event, and the fake API receives the reply.
Both processes must stop cleanly on SIGTERM.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

XINXIBOT = str(Path(sys.executable).with_name("xinxibot"))
SELF_ID, GROUP, COORDINATOR, SECRET = 3300000001, 700100200, 20001, "ci-secret"
DEADLINE = 60  # seconds for any one wait


def fail(message: str, proc: subprocess.Popen | None = None) -> None:
    if proc is not None:
        if proc.poll() is None:
            proc.kill()
        print(proc.communicate(timeout=10)[0] or "", file=sys.stderr)
    sys.exit(f"runtime check FAILED: {message}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [XINXIBOT, *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_http(url: str, proc: subprocess.Popen) -> tuple[int, str]:
    """The first answer of `url` (any HTTP status), while `proc` keeps running."""
    until = time.monotonic() + DEADLINE
    while time.monotonic() < until:
        if proc.poll() is not None:
            fail(f"the process exited with {proc.returncode} before {url} answered", proc)
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")
        except OSError:
            time.sleep(0.2)
    fail(f"{url} did not answer within {DEADLINE} s", proc)
    raise AssertionError  # unreachable


def stop(proc: subprocess.Popen, what: str) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        output = proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        fail(f"{what} did not stop within 30 s of SIGTERM", proc)
    if proc.returncode != 0:
        print(output, file=sys.stderr)
        fail(f"{what} exited with {proc.returncode} after SIGTERM")
    return output


def check_demo(work: Path) -> None:
    port = free_port()
    proc = start(["demo", "--port", str(port)], work)
    status, page = wait_http(f"http://127.0.0.1:{port}/", proc)
    if status != 200 or "政务信息机器人 · 沙盒" not in page:
        fail(f"the sandbox page answered {status} without its title", proc)
    stop(proc, "xinxibot demo")
    print(
        f"runtime check: xinxibot demo served the sandbox page (HTTP 200, {len(page)} characters)"
    )


class FakeOneBot(BaseHTTPRequestHandler):
    """OneBot v11 HTTP API: the account is in GROUP, the coordinator a member of it."""

    calls: ClassVar[list[tuple[str, dict]]] = []
    answers: ClassVar[dict] = {
        "get_login_info": {"user_id": SELF_ID, "nickname": "信息机器人"},
        "get_group_list": [{"group_id": GROUP, "group_name": "信息工作群"}],
        "get_group_member_list": [{"user_id": COORDINATOR}, {"user_id": SELF_ID}],
        "send_group_msg": {"message_id": 1},
        "send_private_msg": {"message_id": 2},
    }

    def do_POST(self) -> None:
        action = self.path.strip("/")
        params = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.calls.append((action, params))
        if action in self.answers:
            envelope = {"status": "ok", "retcode": 0, "data": self.answers[action]}
        else:
            envelope = {"status": "failed", "retcode": 1404, "data": None}
        body = json.dumps(envelope).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def edit(text: str, pattern: str, replacement: str) -> str:
    new, count = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
    if count != 1:
        fail(f"`xinxibot init` wrote no line matching {pattern!r}")
    return new


def signed_event(text: str) -> tuple[bytes, dict[str, str]]:
    event = {
        "time": int(time.time()),
        "self_id": SELF_ID,
        "post_type": "message",
        "message_type": "group",
        "sub_type": "normal",
        "message_id": 1,
        "group_id": GROUP,
        "user_id": COORDINATOR,
        "message": [{"type": "text", "data": {"text": text}}],
        "raw_message": text,
        "font": 0,
        "sender": {"user_id": COORDINATOR, "nickname": "王科长", "card": ""},
    }
    body = json.dumps(event, ensure_ascii=False).encode()
    signature = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Self-ID": str(SELF_ID),
        "X-Signature": signature,
    }
    return body, headers


def check_run(work: Path) -> None:
    api = ThreadingHTTPServer(("127.0.0.1", 0), FakeOneBot)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    port = free_port()
    done = subprocess.run([XINXIBOT, "init"], cwd=work, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        fail(f"xinxibot init exited with {done.returncode}: {done.stdout}{done.stderr}")
    path = work / "xinxibot.toml"
    text = path.read_text(encoding="utf-8")
    text = edit(text, r"^groups = \[123456789\]", f"groups = [{GROUP}]")
    text = edit(text, r'^coordinators = \["10001"\]', f'coordinators = ["{COORDINATOR}"]')
    text = edit(text, r'^listen = "127\.0\.0\.1:8080"', f'listen = "127.0.0.1:{port}"')
    text = edit(text, r'^secret = ""', f'secret = "{SECRET}"')
    text = edit(
        text, r'^api_url = "[^"]*"', f'api_url = "http://127.0.0.1:{api.server_address[1]}"'
    )
    path.write_text(text, encoding="utf-8")

    doctor = subprocess.run(
        [XINXIBOT, "doctor"], cwd=work, capture_output=True, text=True, timeout=120
    )
    if doctor.returncode != 0:
        fail(f"xinxibot doctor exited with {doctor.returncode}:\n{doctor.stdout}{doctor.stderr}")
    print("runtime check: xinxibot doctor passed against the fake OneBot API")

    proc = start(["run"], work)
    wait_http(f"http://127.0.0.1:{port}/onebot/v11/", proc)  # 405 for GET: it is up
    body, headers = signed_event("/帮助")
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/onebot/v11/", data=body, headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        if resp.status != 204:
            fail(f"the signed event was answered {resp.status}, not 204", proc)
    until = time.monotonic() + DEADLINE
    replies: list[str] = []
    while time.monotonic() < until and not replies:
        replies = [
            "".join(seg["data"].get("text", "") for seg in params["message"])
            for action, params in list(FakeOneBot.calls)
            if action == "send_group_msg" and int(params["group_id"]) == GROUP
        ]
        time.sleep(0.2)
    if not any("可用命令" in reply for reply in replies):
        fail(f"the fake OneBot API received no help reply in group {GROUP}: {replies}", proc)
    output = stop(proc, "xinxibot run")
    api.shutdown()
    started = next((line for line in output.splitlines() if "已启动" in line), "")
    print(f"runtime check: xinxibot run ({started}) answered a signed /帮助 in the group")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, check in (("demo", check_demo), ("run", check_run)):
            work = Path(tmp) / name
            work.mkdir()
            check(work)


if __name__ == "__main__":
    main()
