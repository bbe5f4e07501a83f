"""Hostile clients against `xinxibot run` (loopback only): memory, open sockets,
file descriptors, log volume, and whether replies still flow.

    python bench/slow_clients.py                    # this checkout, the sizes below
    python bench/slow_clients.py --root OLD_CHECKOUT # the same load on another checkout
    python bench/slow_clients.py --posts 4 --stalled 5 --half-open 10 --seconds 2   # a smoke run

Three loads, each on a fresh bot process against a fake OneBot HTTP API in this
process:

1. unauthenticated: 100 concurrent POSTs of 4 MiB each, half without a
   signature, half with a wrong one: the bot's RSS before, at its peak and after;
2. stalled: 200 sockets that send half a request line and stop: how many the
   bot still holds open after 30 s, and its RSS;
3. descriptors: the bot limited to 1,024 open files (`ulimit -n 1024`), 1,100
   half-open requests kept open (reopened when the bot closes one) for 30 s,
   while a receipt waits in the outbox for the OneBot API to come back: whether
   it is delivered, how long after, and how many bytes the bot logged.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
GROUP, SELF_ID, SECRET = 700100200, 3300000001, "bench-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory(pid: int) -> tuple[float, float]:
    """(RSS, peak RSS) in MB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def open_sockets(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            pass
    return count


class FakeApi:
    def __init__(self) -> None:
        self.texts: list[tuple[float, str]] = []
        self.failing = False

    async def handle(self, request: web.Request) -> web.Response:
        params = await request.json()
        # Connection: close, so that every call needs a new socket (a file descriptor)
        if self.failing:
            return web.Response(status=500, headers={"Connection": "close"})
        text = "".join(s["data"].get("text", "") for s in params.get("message", []))
        self.texts.append((time.monotonic(), text))
        return web.json_response(
            {"status": "ok", "retcode": 0, "data": {"message_id": 1}},
            headers={"Connection": "close"},
        )


class Bot:
    """`xinxibot run` from `root` as a subprocess."""

    def __init__(self, root: Path, python: str, api_url: str, nofile: int | None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="xinxibot-slow-"))
        self.port = free_port()
        config = self.dir / "xinxibot.toml"
        config.write_text(
            f'[bot]\ndatabase = "sqlite+aiosqlite:///{self.dir / "bot.db"}"\n'
            f'listen = "127.0.0.1:{self.port}"\ncoordinators = ["10002"]\n'
            f'files_dir = "{self.dir / "files"}"\n'
            f'[onebot]\ngroups = [{GROUP}]\napi_url = "{api_url}"\nsecret = "{SECRET}"\n'
            "rate_per_minute = 0\n",
            encoding="utf-8",
        )
        self.log = self.dir / "bot.log"
        limit = (
            (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)))
            if nofile
            else None
        )
        self.process = subprocess.Popen(
            [python, "-m", "bot.cli", "run", "--config", str(config)],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
            preexec_fn=limit,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.ids = iter(range(1, 1 << 30))

    async def ready(self) -> None:
        for _ in range(300):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise SystemExit("the bot did not start: " + self.log.read_text()[-2000:])

    async def say(self, user: int, text: str) -> int:
        event = {
            "time": 1795000000, "self_id": SELF_ID, "post_type": "message",
            "message_type": "group", "sub_type": "normal", "message_id": next(self.ids),
            "group_id": GROUP, "user_id": user, "font": 0,
            "message": [{"type": "text", "data": {"text": text}}], "raw_message": text,
            "sender": {"user_id": user, "nickname": f"用户{user}", "card": ""},
        }  # fmt: skip
        body = json.dumps(event, ensure_ascii=False).encode()
        signature = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
        head = (
            f"POST /onebot/v11/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Self-ID: {SELF_ID}\r\n"
            f"X-Signature: {signature}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 10)
        writer.write(head + body)
        status = int((await asyncio.wait_for(reader.readline(), 30)).split()[1])
        writer.close()
        return status

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def unauthenticated(bot: Bot, args: argparse.Namespace) -> None:
    before = memory(bot.process.pid)[0]
    body = b"{" + b" " * (4 * 1024 * 1024 - 2) + b"}"

    async def post(signed: bool | None) -> None:
        extra = "X-Signature: sha1=" + "0" * 40 + "\r\n" if signed else ""
        head = (
            f"POST /onebot/v11/ HTTP/1.1\r\nHost: x\r\nX-Self-ID: {SELF_ID}\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", bot.port)
            writer.write(head + body)
            await asyncio.wait_for(writer.drain(), 30)
            await asyncio.wait_for(reader.read(100), 30)
            writer.close()
        except (OSError, TimeoutError):
            pass

    await asyncio.gather(*(post(i % 2 == 0) for i in range(args.posts)))
    await asyncio.sleep(5)
    rss, peak = memory(bot.process.pid)
    print(
        f"1 unauthenticated   {args.posts} x 4 MiB: RSS {before:.0f} MB before, peak {peak:.0f} MB, {rss:.0f} MB 5 s after"
    )


async def stalled(bot: Bot, args: argparse.Namespace) -> None:
    sockets = []
    for _ in range(args.stalled):
        reader, writer = await asyncio.open_connection("127.0.0.1", bot.port)
        writer.write(b"POST /onebot/v11/ HTTP/1.1\r\nHost: x\r\n")
        sockets.append((reader, writer))
    await asyncio.sleep(2)
    held_early = open_sockets(bot.process.pid)
    await asyncio.sleep(args.seconds - 2)
    held = open_sockets(bot.process.pid)
    rss, peak = memory(bot.process.pid)
    print(f"2 stalled           {args.stalled} sockets: the bot holds {held_early} sockets after 2 s, "
          f"{held} after {args.seconds} s; RSS {rss:.0f} MB (peak {peak:.0f})")  # fmt: skip
    for _, writer in sockets:
        writer.close()


async def descriptors(bot: Bot, args: argparse.Namespace, api: FakeApi) -> None:
    assert await bot.say(10002, "/添加单位 城关镇 乡镇") == 204
    assert await bot.say(10002, "/登记 10020 城关镇") == 204
    await asyncio.sleep(2)
    api.failing = True  # the OneBot side is away: the receipt waits in the outbox
    assert await bot.say(10020, "/报送 攻击期间的回执\n正文") == 204
    log_before = bot.log.stat().st_size
    stop = asyncio.Event()

    async def half_open() -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", bot.port)
                writer.write(b"POST /onebot/v11/ HTTP/1.1\r\nHost: x\r\nContent-Len")
                await reader.read()  # until the bot lets it go; then open another
                writer.close()
            except OSError:
                await asyncio.sleep(0.05)

    attackers = [asyncio.create_task(half_open()) for _ in range(args.half_open)]
    await asyncio.sleep(1)  # the receipt's next attempt comes 2 s after its first, mid-flood
    api.failing = False
    started = time.monotonic()
    posted = None
    try:
        posted = await bot.say(10020, "/我的稿件")
    except (OSError, TimeoutError, ValueError, IndexError) as exc:
        posted = f"no answer ({type(exc).__name__})"
    await asyncio.sleep(max(args.seconds - 1 - (time.monotonic() - started), 1))
    delivered = [t for t, text in api.texts if "攻击期间的回执" in text]
    logged = bot.log.stat().st_size - log_before
    held = open_sockets(bot.process.pid)
    stop.set()
    for task in attackers:
        task.cancel()
    await asyncio.gather(*attackers, return_exceptions=True)
    wait = (
        f"{delivered[0] - started:.1f} s after the API came back" if delivered else "NOT delivered"
    )
    print(f"3 descriptors       nofile {args.nofile}, {args.half_open} half-open: receipt {wait}; "
          f"a new POST during the flood: {posted}; bot sockets {held}; "
          f"logged {logged / 1e6:.2f} MB in {args.seconds} s")  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the attacker needs many
    api = FakeApi()
    app = web.Application()
    app.router.add_post("/{action}", api.handle)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    api_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    print(f"checkout: {args.root}")
    for load, nofile in ((unauthenticated, None), (stalled, None), (descriptors, args.nofile)):
        bot = Bot(args.root, args.venv_python, api_url, nofile)
        try:
            await bot.ready()
            await (load(bot, args, api) if load is descriptors else load(bot, args))
        finally:
            bot.stop()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to run")
    parser.add_argument("--venv-python", default=sys.executable, help="the Python to run it with")
    parser.add_argument("--posts", type=int, default=100, help="unauthenticated 4 MiB POSTs")
    parser.add_argument("--stalled", type=int, default=200, help="stalled sockets")
    parser.add_argument("--half-open", type=int, default=1100, help="half-open requests")
    parser.add_argument("--nofile", type=int, default=1024, help="the bot's open-file limit")
    parser.add_argument("--seconds", type=int, default=30, help="how long loads 2 and 3 last")
    args = parser.parse_args()
    args.root = args.root.resolve()
    asyncio.run(main(args))
