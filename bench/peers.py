"""Processes the ingest benchmark talks to, each run as its own process:

    python bench/peers.py fake-api PORT   # a OneBot v11 HTTP API that records what it is sent
    python bench/peers.py bare PORT       # the ceiling: read the body, answer 204

The fake API answers every action with `ok` and keeps, for each message sent,
the arrival time (time.monotonic(), which is the same clock in every process
on Linux), the @-mentioned users (or the private chat's user), the target and
the text. `GET /_bench/records?since=N` returns the records from index N.
"""

from __future__ import annotations

import sys
import time

from aiohttp import web


def fake_api() -> web.Application:
    records: list[list] = []
    counter = iter(range(1, 1 << 62))

    async def action(request: web.Request) -> web.Response:
        now = time.monotonic()
        name = request.match_info["action"].strip("/")
        params = await request.json() if request.can_read_body else {}
        if name in ("send_group_msg", "send_private_msg", "send_msg"):
            message = params.get("message")
            segments = (
                message
                if isinstance(message, list)
                else [{"type": "text", "data": {"text": str(message)}}]
            )
            users = [int(s["data"]["qq"]) for s in segments if s.get("type") == "at"]
            if name == "send_private_msg" or params.get("message_type") == "private":
                users.append(int(params["user_id"]))
            text = "".join(s["data"].get("text", "") for s in segments if s.get("type") == "text")
            target = params.get("group_id") or params.get("user_id")
            records.append([now, users, target, text])
        return web.json_response(
            {"status": "ok", "retcode": 0, "data": {"message_id": next(counter)}}
        )

    async def read(request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        return web.json_response({"total": len(records), "records": records[since:]})

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_get("/_bench/records", read)
    app.router.add_post("/{action:.*}", action)
    return app


def bare() -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/onebot/v11/", handle)
    return app


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    web.run_app(
        {"fake-api": fake_api, "bare": bare}[kind](),
        host="127.0.0.1",
        port=port,
        print=None,
        access_log=None,
    )
