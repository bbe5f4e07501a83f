"""A hostile upload against `xinxibot run`: the bot's peak memory and event-loop stall.

    python bench/hostile_files.py                   # a .docx inflating to 1 GiB
    python bench/hostile_files.py --inflate-mb 80   # the 430 KiB kind: 80 MB of text
    python bench/hostile_files.py --inflate-mb 30 --incompressible   # heavy, but no bomb

It starts `xinxibot run` (SQLite, this checkout; officers imported as in
ingest.py) as a subprocess against a fake OneBot API served by this process
(loopback only), has an officer upload a .docx whose word/document.xml
inflates to --inflate-mb MiB, and meanwhile has another officer send `/帮助`
every 0.25 s, timing each from its POST to its reply at the fake API. It prints
the bot's peak RSS (VmHWM), the largest RSS sampled in its child processes
(the file reader), the slowest and median `/帮助` answer while the file was
handled, how long the file took, and what became of it (the reply, the stored
body's length).

To measure an older commit, copy this file into that checkout's bench/ and run
it there.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import io
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from aiohttp import ClientSession, web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import GROUP, SECRET, SELF_ID, make_event, officers, start_xinxibot, wait_ready

W = b'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def bomb(inflate_mb: int, incompressible: bool) -> bytes:
    """A valid .docx whose document.xml inflates to about `inflate_mb` MiB of text:
    the same paragraph over and over (a bomb), or random characters (a heavy file
    that passes the size checks)."""
    import random

    import docx

    document = docx.Document()
    document.add_paragraph("标题")
    buf = io.BytesIO()
    document.save(buf)
    src = zipfile.ZipFile(buf)
    paragraph = b"<w:p><w:r><w:t>" + "今年以来".encode() * 250 + b"</w:t></w:r></w:p>"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            if info.filename != "word/document.xml":
                z.writestr(info, src.read(info))
                continue
            with z.open(info.filename, "w", force_zip64=True) as f:
                f.write(b'<?xml version="1.0"?><w:document ' + W + b"><w:body>")
                block = paragraph * 1024
                rng = random.Random(1)
                for _ in range(inflate_mb * 1024 * 1024 // len(block)):
                    if incompressible:
                        text = "".join(
                            chr(0x4E00 + rng.randrange(20000)) for _ in range(len(block) // 3)
                        )
                        block = b"<w:p><w:r><w:t>" + text.encode() + b"</w:t></w:r></w:p>"
                    f.write(block)
                f.write(b"</w:body></w:document>")
    return out.getvalue()


class FakeApi:
    """Answers like NapCat, serves the file, and records when each reply arrived."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.replies: list[tuple[float, list[int], str]] = []
        self.changed = asyncio.Condition()
        self.base = ""

    def count(self, user: int) -> int:
        return sum(1 for _, users, _ in self.replies if user in users)

    async def wait_reply(self, user: int, seen: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.count(user) > seen)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/files/upload.docx", self._file)
        app.router.add_post("/{action}", self._action)
        return app

    async def _file(self, request: web.Request) -> web.Response:
        return web.Response(body=self.data)

    async def _action(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        action, params = request.match_info["action"], await request.json()
        data: dict = {"message_id": len(self.replies) + 1}
        if action in ("send_group_msg", "send_private_msg"):
            segments = params["message"]
            users = [int(s["data"]["qq"]) for s in segments if s["type"] == "at"]
            text = "".join(s["data"].get("text", "") for s in segments if s["type"] == "text")
            async with self.changed:
                self.replies.append((now, users, text))
                self.changed.notify_all()
        elif action in ("get_group_file_url", "get_file"):
            data = {"url": f"{self.base}/files/upload.docx"}
        return web.json_response({"status": "ok", "retcode": 0, "data": data})


def upload_event(user: int, size: int) -> tuple[bytes, dict]:
    payload = {
        "time": int(time.time()), "self_id": SELF_ID, "post_type": "notice",
        "notice_type": "group_upload", "group_id": GROUP, "user_id": user,
        "file": {"id": "/bench-upload", "name": "工作情况.docx", "size": size, "busid": 102},
    }  # fmt: skip
    body = json.dumps(payload, ensure_ascii=False).encode()
    signature = "sha1=" + hmac.new(SECRET.encode(), body, "sha1").hexdigest()
    headers = {"Content-Type": "application/json", "X-Self-ID": str(SELF_ID),
               "X-Signature": signature}  # fmt: skip
    return body, headers


def status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


async def run(args: argparse.Namespace) -> None:
    data = bomb(args.inflate_mb, args.incompressible)
    fake = FakeApi(data)
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    workdir = Path(tempfile.mkdtemp(prefix="xinxibot-hostile-"))
    server = start_xinxibot(workdir, fake.base, rate_per_minute=0)
    uploader, asker = officers(2)
    peak_child_kb = 0
    try:
        await wait_ready(server)
        pid = server.proc.pid
        async with ClientSession() as session:
            answers: list[float] = []
            done = asyncio.Event()

            async def ask_help() -> None:
                ev = make_event(asker[0], asker[1], "help", "/帮助")
                seen = fake.count(asker[0])
                start = time.monotonic()
                async with session.post(server.url, data=ev.body, headers=ev.headers) as r:
                    r.raise_for_status()
                await fake.wait_reply(asker[0], seen)
                answers.append(time.monotonic() - start)

            async def keep_asking() -> None:
                while not done.is_set():
                    await ask_help()
                    await asyncio.sleep(0.25)

            async def sample() -> None:
                nonlocal peak_child_kb
                while not done.is_set() and server.proc.poll() is None:
                    for child in children(pid):
                        peak_child_kb = max(peak_child_kb, status_kb(child, "VmRSS"))
                    await asyncio.sleep(0.02)

            await ask_help()  # warm
            answers.clear()
            rss_before = status_kb(pid, "VmRSS")
            body, headers = upload_event(uploader[0], len(data))
            start = time.monotonic()
            async with session.post(server.url, data=body, headers=headers) as r:
                r.raise_for_status()
            helpers = [asyncio.create_task(keep_asking()), asyncio.create_task(sample())]
            exited = asyncio.create_task(asyncio.to_thread(server.proc.wait))
            answered = asyncio.create_task(fake.wait_reply(uploader[0], 0))
            await asyncio.wait([exited, answered], timeout=args.limit,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if server.proc.poll() is not None:
                print(f"xinxibot exited with {server.proc.returncode} while reading the file")
            elif not answered.done():
                print(f"no answer to the upload within {args.limit} s")
            answered.cancel()
            handled = time.monotonic() - start
            peak_kb = status_kb(pid, "VmHWM")
            done.set()
            await asyncio.wait(helpers, timeout=args.limit)
            for task in helpers:
                task.cancel()
        reply = next((t for _, users, t in fake.replies if uploader[0] in users), "—")
        with sqlite3.connect(workdir / "xinxibot.db") as db:
            stored = db.execute("SELECT max(length(body)) FROM draft").fetchone()[0]
    finally:
        server.stop()
        await runner.cleanup()
    print(
        f"upload: {len(data) / 1024:.0f} KiB .docx, document.xml inflating to {args.inflate_mb} MiB"
    )
    print(f"bot RSS before: {rss_before / 1024:.0f} MB; peak (VmHWM): {peak_kb / 1024:.0f} MB; "
          f"reader child peak (sampled): {peak_child_kb / 1024:.0f} MB")  # fmt: skip
    if answers:
        print(f"/帮助 during the upload: {len(answers)} answered, median "
              f"{statistics.median(answers) * 1000:.0f} ms, slowest {max(answers) * 1000:.0f} ms")  # fmt: skip
    print(f"upload answered after {handled:.1f} s: {reply.strip().splitlines()[0]}")
    print(f"longest stored draft body: {stored or 0} characters")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inflate-mb", type=int, default=1024)
    parser.add_argument(
        "--incompressible", action="store_true", help="random text instead of a repeated paragraph"
    )
    parser.add_argument("--limit", type=float, default=600, help="seconds to wait for the bot")
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
