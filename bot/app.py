"""The bot: wiring of config, clock, database, router, outbox sender and transports."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import timedelta

from handlers import ROUTERS, drafts, files, quotas, standings
from storage import migrate
from storage.db import Database
from storage.queries import Repo

from .clock import Clock
from .cluster import Cluster
from .config import Config, database_url
from .context import message_segments
from .dispatcher import Dispatcher
from .render import Renderer
from .router import CommandTable
from .rules import load_rules
from .scheduler import Scheduler
from .sender import Sender
from .transport import HttpApi, ReverseWsHub, Transport
from .workdays import PostingTimes, QuietHours, WorkCalendar

log = logging.getLogger(__name__)

TICK_SECONDS = 30.0


class BotApp:
    def __init__(
        self, config: Config, clock: Clock | None = None, transport: Transport | None = None
    ) -> None:
        self.config = config
        self.clock = clock or Clock(config.tz)
        self.db = Database(database_url(config))
        self.renderer = Renderer({"county": config.bot.county, "bulletin": config.bot.bulletin})
        self.rules = load_rules(
            config.base_dir / config.bot.scoring if config.bot.scoring else None
        )
        self.commands = CommandTable(ROUTERS)
        self.own_groups = set(config.onebot.groups)  # events are taken from these only
        # Every group of the county, other processes' too (posts go to all), and
        # which account serves each: kept by the cluster from `served_group`.
        self.groups = set(self.own_groups)
        self.routes: dict[int, int] = {}
        timeout = float(config.onebot.api_timeout_seconds)
        self.ws_hub = ReverseWsHub(timeout)
        self.http_api = (
            HttpApi(config.onebot.api_url, config.onebot.access_token, timeout)
            if config.onebot.api_url
            else None
        )
        self.transport: Transport = transport or self.http_api or self.ws_hub
        self.sender = Sender(
            self.db,
            self.transport,
            self.clock,
            config.onebot.rate_per_minute,
            on_drop=self._dropped,
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
        self.collecting: set[tuple[str | None, int, int]] = set()
        self._tasks: set[asyncio.Task] = set()
        self._ticker: asyncio.Task | None = None
        self._analyzed_on = None  # the day the planner statistics were last refreshed

    # ------------------------------------------------------------ lifecycle

    async def start(self, tick: bool = True) -> None:
        async with self.cluster.starting():
            await migrate.upgrade(self.db.engine)
            await self.cluster.join()
            now = self.clock.now()
            await self.db.optimize()
            self._analyzed_on = now.date()
            async with self.db.transaction() as s:
                repo = Repo(s)
                for im_id in sorted(self.config.coordinator_ids):
                    await repo.members.ensure_coordinator(im_id, now)
                self.collecting = set(await repo.collecting.all_keys())
                pending_files = await repo.files.pending_ids(self.config.onebot.self_id or None)
            for job_id in pending_files:  # downloads interrupted by a restart
                self.spawn(files.download(self, job_id))
            await self.sender.start()
            self.scheduler.start(paused=not self.cluster.leader)
            standings.ensure_report_jobs(self)
            quotas.ensure_quota_jobs(self)
        self.cluster.start()
        if tick:
            self._ticker = asyncio.create_task(self._tick_forever(), name="ticker")

    async def stop(self) -> None:
        await self.cluster.leave()
        self.scheduler.shutdown()
        if self._ticker is not None:
            self._ticker.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        await self.sender.stop()
        if self.http_api is not None:
            await self.http_api.close()
        await self.db.close()

    def spawn(self, coro) -> asyncio.Task:
        """A background task the app waits for on shutdown."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
        idle = timedelta(minutes=self.config.limits.collect_idle_minutes)
        await drafts.prompt_idle_collections(self, now - idle)
        if self._analyzed_on != now.date():
            self._analyzed_on = now.date()
            await self.db.optimize()

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
            )
