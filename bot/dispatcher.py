"""From a parsed event to the handlers registered on the routers, in one
transaction per event.

Order of checks: own messages and meta events are dropped; events from
groups that are not configured are dropped before anything is read or
stored; files go to the registered file handler; a message that is not a
command goes to the conversation the person has open, if any, and ordinary
chat is never answered. A handler runs inside a transaction that also
records the event key, so a redelivered event changes nothing. Roles of
commands are checked here, with `router.require_role` (the console's pages
and actions use the same function).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from storage.db import DatabaseUnavailable, is_conflict
from storage.models import Role
from storage.queries import Repo

from .context import Context, Refusal
from .onebot import Event
from .router import Command, FileSpec, require_role
from .throttle import StrangerThrottle

if TYPE_CHECKING:
    from .app import BotApp

log = logging.getLogger(__name__)

CONFLICT_ATTEMPTS = 5


class KeyedLocks:
    """One lock per key, so events of one (chat, user) run one at a time."""

    def __init__(self) -> None:
        self._locks: dict[tuple, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._users: dict[tuple, int] = defaultdict(int)

    @asynccontextmanager
    async def hold(self, key: tuple) -> AsyncIterator[None]:
        self._users[key] += 1
        try:
            async with self._locks[key]:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]


class Dispatcher:
    def __init__(self, app: BotApp) -> None:
        self.app = app
        self.locks = KeyedLocks()
        self.throttle = StrangerThrottle()
        self.received = 0  # events taken from the implementation (for /metrics)

    def accepts(self, event: Event) -> bool:
        """False for what the bot must ignore entirely."""
        if event.post_type not in ("message", "notice"):
            return False  # meta_event (heartbeat, lifecycle), request, message_sent
        if event.user_id == event.self_id:
            return False
        if event.chat_type == "group" and event.group_id not in self.app.own_groups:
            return False
        return True

    async def handle(self, event: Event) -> None:
        self.received += 1
        if not self.accepts(event):
            return
        self.app.self_id = self.app.config.onebot.self_id or event.self_id
        if event.file is not None:
            spec = self.app.registry.file
            if spec is not None:
                await self.run(event, lambda ctx: self._file(ctx, spec))
            return
        if event.post_type != "message":
            return
        command = self.app.registry.parse(event.segments, event.self_id)
        talking = (event.chat_type, event.chat_id, event.user_id) in self.app.conversations
        if command is None and not talking and event.chat_type == "group":
            return  # ordinary chat
        if not self.throttle.allows(event.user_id, self.app.clock.now()):
            return  # a stranger's flood: dropped before any database work
        await self.run(event, lambda ctx: self._route(ctx, command))

    async def run(self, event: Event, action: Callable[[Context], object]) -> None:
        """Run `action` in one transaction (`app.acting`) with the event's key; a Refusal
        or a crash rolls everything back and leaves only the key and the reply.
        A conflict with another process's transaction (deadlock, serialization
        failure, a key inserted meanwhile) runs it again; a lost database
        raises DatabaseUnavailable (the event is refused, to be redelivered)."""
        app = self.app
        async with self.locks.hold((event.chat_type, event.chat_id, event.user_id)):
            for attempt in range(1, CONFLICT_ATTEMPTS + 1):
                try:
                    async with app.acting(None, event=event) as ctx:
                        if not await self._claim(ctx):
                            return
                        ctx.member = await ctx.repo.members.by_im(event.user_id)
                        await action(ctx)
                    return
                except Refusal as exc:
                    refusal = exc.text
                except DatabaseUnavailable:
                    raise
                except Exception as exc:
                    if is_conflict(exc) and attempt < CONFLICT_ATTEMPTS:
                        log.info(
                            "event %s met a concurrent transaction (%s); again", event.key, exc
                        )
                        await asyncio.sleep(random.uniform(0.01, 0.05) * attempt)
                        continue
                    log.exception("handler failed on event %s", event.key)
                    refusal = app.renderer.text("internal_error.txt.j2")
                break
            try:
                async with app.acting(None, event=event) as ctx:
                    if await self._claim(ctx):
                        ctx.low_priority = True
                        ctx.reply_text(refusal)
            except DatabaseUnavailable:
                raise
            except Exception:
                await self._give_up(event)
                raise

    async def _claim(self, ctx: Context) -> bool:
        """Record the event's key; False for a redelivery (already handled)."""
        event = ctx.event
        if event.key is None or await ctx.repo.events.claim(event.key, ctx.now, event.key_ttl):
            return True
        log.info("duplicate event %s ignored", event.key)
        return False

    async def _file(self, ctx: Context, spec: FileSpec) -> None:
        if ctx.role in spec.roles:  # files from anyone else are ignored (DESIGN 4.3)
            await spec.handler(ctx, ctx.event)

    async def _give_up(self, event: Event) -> None:
        """Not even a refusal could be stored: record the key alone, so the
        implementation's retry of this event is dropped instead of failing again
        (an HTTP 500 makes it retry)."""
        log.exception("event %s failed twice; recorded as processed", event.key)
        if event.key is None:
            return
        try:
            async with self.app.db.transaction() as session:
                await Repo(session).events.claim(event.key, self.app.clock.now(), event.key_ttl)
        except Exception:
            log.exception("could not record event %s", event.key)

    async def _route(self, ctx: Context, command: Command | None) -> None:
        event, app = ctx.event, self.app
        if ctx.role in (Role.stranger, Role.none):
            ctx.low_priority = True  # whatever a stranger gets waits behind receipts
            self.throttle.count(event.user_id, ctx.now)
        text_len = sum(len(s.data.get("text", "")) for s in event.segments if s.type == "text")
        if text_len > app.config.limits.max_message_chars:
            raise Refusal(
                "too_long.txt.j2", limit=app.config.limits.max_message_chars, length=text_len
            )
        if ctx.member is not None and event.sender_name:
            await ctx.repo.members.rename(ctx.member, event.sender_name, ctx.now)
        if event.chat_type == "private" and ctx.role in (Role.stranger, Role.none):
            await self._stranger_hint(ctx)
            return
        if command is None:
            owner = app.conversations.get(ctx.conversation_key)
            if owner is not None:
                await app.registry.conversations[owner](ctx, event)
            return
        if command.spec is None:
            ctx.low_priority = True
            ctx.reply(
                "unknown_command.txt.j2",
                word=command.word,
                nearest=app.registry.nearest(command.word),
            )
            return
        spec = command.spec
        require_role(ctx.role, spec.roles, command=spec.name)
        ctx.low_priority = ctx.low_priority or spec.low_priority
        await spec.handler(ctx, command)

    async def _stranger_hint(self, ctx: Context) -> None:
        """At most one registration hint a day per person in private chat."""
        day = ctx.now.date().isoformat()
        if await ctx.repo.events.claim(f"hint:{ctx.event.user_id}:{day}", ctx.now):
            ctx.reply("stranger_hint.txt.j2")
