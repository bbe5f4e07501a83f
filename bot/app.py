"""The bot: wiring of config, clock, database, routers, outbox sender and transports.

The workflows come in as the explicit list of routers (handlers.ROUTERS, given
by the composition root, bot/cli.py); nothing in bot/ imports a workflow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import timedelta

from storage import migrate
from storage.db import Database
from storage.models import Member
from storage.queries import Repo

from .clock import Clock
from .cluster import Cluster
from .config import Config, database_url
from .context import Context, ConversationKey, Refusal, message_segments
from .dispatcher import Dispatcher
from .onebot import Event
from .pages import SESSION_LONGEST
from .render import Renderer
from .router import Registry, Router
from .rules import load_rules
from .scheduler import Scheduler
from .sender import Sender
from .transport import ForwardWs, HttpApi, OneBotApi, Transport
from .workdays import PostingTimes, QuietHours, WorkCalendar

log = logging.getLogger(__name__)

TICK_SECONDS = 30.0
PRUNE_EVERY = timedelta(hours=1)  # how often expired event keys and console sessions go


class _Phases:
    """Wall time of each start-up phase, for one log line (bench/startup.py reads it)."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.ms: dict[str, float] = {}

    def end(self, name: str) -> None:
        now = time.perf_counter()
        self.ms[name] = (now - self.last) * 1000
        self.last = now

    def __str__(self) -> str:
        parts = ", ".join(f"{name} {ms:.0f}" for name, ms in self.ms.items())
        return f"{(self.last - self.start) * 1000:.0f} ms ({parts})"


class BotApp:
    def __init__(
        self,
        config: Config,
        routers: Iterable[Router],
        *,
        clock: Clock | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or Clock(config.tz)
        self.db = Database(database_url(config))
        self.renderer = Renderer({"county": config.bot.county, "bulletin": config.bot.bulletin})
        self.rules = load_rules(
            config.base_dir / config.bot.scoring if config.bot.scoring else None
        )
        self.registry = Registry(routers)
        self.own_groups = set(config.onebot.groups)  # events are taken from these only
        # Every group of the county, other processes' too (posts go to all), and
        # which account serves each: kept by the cluster from `served_group`.
        self.groups = set(self.own_groups)
        self.routes: dict[int, int] = {}
        timeout = float(config.onebot.api_timeout_seconds)
        self.http_api = (
            HttpApi(config.onebot.api_url, config.onebot.access_token, timeout)
            if config.onebot.api_url
            else None
        )
        # Picks the channel of each call: the account's open WebSocket, else the HTTP API.
        self.onebot_api = OneBotApi(timeout, self.http_api)
        self.transport: Transport = transport or self.onebot_api
        self.forward = [
            ForwardWs(
                url, config.onebot.access_token, self.onebot_api, self.receive, self._connected
            )
            for url in config.onebot.ws_url
        ]
        self.sender = Sender(
            self.db,
            self.transport,
            self.clock,
            config.onebot.rate_per_minute,
            on_drop=self._dropped,
            # 风控 concerns QQ accounts; an injected transport (the sandbox) has none to protect.
            account_interval=timedelta(
                milliseconds=config.onebot.account_interval_ms if transport is None else 0
            ),
            account=config.onebot.self_id or None,
        )
        self.dispatcher = Dispatcher(self)
        self.calendar = WorkCalendar(config.calendar.holidays, config.calendar.workdays)
        self.posting = PostingTimes(self.calendar, QuietHours(config.schedule.quiet_hours))
        self.scheduler = Scheduler(self, database_url(config), self.clock)
        self.cluster = Cluster(self)
        self.downloads = asyncio.Semaphore(config.limits.concurrent_downloads)
        # the bot's account: configured, or learnt from events (one process on SQLite)
        self.self_id: int | None = config.onebot.self_id or None
        # Open multi-step conversations -> the owning router's name; in memory, so ordinary
        # group chat is answered without touching the database (owners restore it at start).
        self.conversations: dict[ConversationKey, str] = {}
        self._tasks: set[asyncio.Task] = set()
        self._ticker: asyncio.Task | None = None
        self._analyzed_on = None  # the day the planner statistics were last refreshed
        self._pruned_at = None  # when expired event keys were last deleted

    # ------------------------------------------------------------ lifecycle

    async def start(
        self, tick: bool = True, prepare: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Migrate, run `prepare` (the demo seeds its county here), join the cluster, then
        the routers' start-up hooks (jobs, conversations, interrupted downloads), then the
        sender and the forward WebSockets."""
        phases = _Phases()
        async with self.cluster.starting():
            phases.end("start-up lock")
            await migrate.upgrade(self.db.engine)
            phases.end("migrations")
            if prepare is not None:
                await prepare()
                phases.end("prepare")
            await self.cluster.join()
            phases.end("cluster")
            now = self.clock.now()
            await self.db.optimize()
            self._analyzed_on = now.date()
            phases.end("statistics")
            async with self.db.transaction() as s:
                repo = Repo(s)
                for im_id in sorted(self.config.coordinator_ids):
                    await repo.members.ensure_coordinator(im_id, now)
            self.scheduler.start(paused=not self.cluster.leader)
            for hook in self.registry.startup:
                await hook(self)
            phases.end("jobs and hooks")
            await self.sender.start()
            phases.end("sender")
        self.cluster.start()
        for connection in self.forward:
            connection.start()
        if tick:
            self._ticker = asyncio.create_task(self._tick_forever(), name="ticker")
        log.info("started in %s", phases)

    async def stop(self) -> None:
        await self.cluster.leave()
        self.scheduler.shutdown()
        if self._ticker is not None:
            self._ticker.cancel()
        for connection in self.forward:
            await connection.stop()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        await self.sender.stop()
        await self.onebot_api.close()
        await self.db.close()

    def spawn(self, coro) -> asyncio.Task:
        """A background task the app waits for on shutdown."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def receive(self, event: Event) -> None:
        """An event from a WebSocket: handled in its own task so API answers keep
        flowing on the socket; the dispatcher keeps one person's events in order."""
        self.spawn(self._handle_logged(event))

    async def _handle_logged(self, event: Event) -> None:
        try:
            await self.dispatcher.handle(event)
        except Exception:
            log.exception("event %s failed", event.key)

    async def _connected(self) -> None:
        """A WebSocket of the account opened: what waits in the outbox goes now."""
        await self.sender.retry_now()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self.tick()
            except Exception:
                log.exception("tick failed")

    async def tick(self) -> None:
        """Time-driven housekeeping; tests call it after moving the clock."""
        now = self.clock.now()
        for hook in self.registry.ticks:
            await hook(self, now)
        if self._analyzed_on != now.date():
            self._analyzed_on = now.date()
            await self.db.optimize()
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            idle = timedelta(minutes=self.config.web.session_idle_minutes)
            async with self.db.transaction() as s:
                await Repo(s).events.prune(now)
                await Repo(s).console.prune(now, idle, SESSION_LONGEST)

    # ------------------------------------------------------------ acting

    @asynccontextmanager
    async def acting(
        self, member: Member | None, *, event: Event | None = None
    ) -> AsyncIterator[Context]:
        """One write transaction and its Context, for running operations:

            async with app.acting(coordinator) as ctx:
                await review.adopt(ctx, draft, outlet, "full")

        `member` is the actor (reloaded in this transaction; None: the bot itself, as a
        scheduled job acts). On leaving: commit, run the after-commit callbacks, wake
        the sender. A Refusal rolls everything back and comes out with its rendered
        `text`. The dispatcher runs every chat event through this too (with the event).
        """
        after: list[Callable[[], None]] = []
        async with self.db.transaction() as session:
            repo = Repo(session)
            actor = await repo.members.get(member.id) if member is not None else None
            ctx = Context(self, repo, event, actor, after)
            try:
                yield ctx
            except Refusal as exc:  # rendered before the rollback expires its objects
                exc.text = ctx.render(exc.template, **exc.context)
                raise
        for callback in after:
            callback()
        self.sender.wake()

    # ------------------------------------------------------------ outgoing

    async def _dropped(self, rows) -> None:
        """Messages too old to send after an outage: the coordinators are told, once per drop."""
        targets = sorted({(r.target_type, r.target_id) for r in rows})
        async with self.db.transaction() as s:
            repo = Repo(s)
            text = self.renderer.text(
                "outbox_dropped.txt.j2",
                count=len(rows),
                targets=targets,
                oldest=min(r.created_at for r in rows),
            )
            for c in await repo.members.coordinators():
                self.queue(repo, "private", c.im_id, text)

    def queue(
        self,
        repo: Repo,
        target_type: str,
        target_id: int,
        text: str,
        *,
        mention: Iterable[int] = (),
        mergeable: bool = False,
        self_id: int | None = None,
        priority: int = 0,
    ) -> None:
        """Add a message to the outbox of `repo`'s transaction; long text is
        split into numbered parts, the mentions go with the first part."""
        parts = self.renderer.split(text)
        now = self.clock.now()
        if target_type == "group":  # a group's messages go through the account serving it
            self_id = self.routes.get(target_id) or self_id
        for i, part in enumerate(parts):
            segments = message_segments(part, mention if i == 0 else ())
            repo.outbox.add(
                target_type,
                target_id,
                segments,
                now,
                self_id=self_id or self.self_id,
                mergeable=mergeable and len(parts) == 1,
                priority=priority,
            )
