"""Several bot processes, one county (DESIGN §7.2).

On PostgreSQL several `xinxibot run` processes share one database, each with
its own config: its own QQ account (`onebot.self_id`), `listen` port and groups.

* **Accounts and groups.** At start-up a process takes its account's advisory
  lock (a second process for the same account is refused) and writes its
  groups to `served_group` (a group served by another running account is
  refused; one whose account is not running any more moves). Every process
  reads the table every POLL_SECONDS: a post to a group is queued for the
  group's account, so only that account's process sends it, at that process's
  pace; the county-wide posts (reports, topics, reminders) go to every group
  in the table.
* **One scheduler.** Every process writes jobs to the shared job store, but
  only the holder of the scheduler lock runs them; the others ask for the lock
  every POLL_SECONDS. A killed holder's session ends at once and another
  process takes over within POLL_SECONDS (a job that was running when it died
  runs again RERUN_AFTER after it started). A frozen holder (SIGSTOP) keeps its
  connection and so the lock: nobody takes over, and its jobs run late, once,
  when it resumes. A holder that loses its lock connection stops running jobs
  at its next poll.

On SQLite there is one process: it is the scheduler, and nothing is locked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from storage.db import is_sqlite
from storage.locks import SCHEDULER, STARTUP, LockConnection, account_key
from storage.queries import Repo

from .config import ConfigError

if TYPE_CHECKING:
    from .app import BotApp

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0


class Cluster:
    def __init__(self, app: BotApp) -> None:
        self.app = app
        self.locks = (
            None
            if is_sqlite(app.db.url)
            else LockConnection(app.db.url, f"xinxibot {app.config.onebot.self_id} locks")
        )
        self.leader = False  # runs the scheduler
        self._task: asyncio.Task | None = None

    @property
    def account(self) -> int:
        return self.app.config.onebot.self_id

    @asynccontextmanager
    async def starting(self) -> AsyncIterator[None]:
        """Start-up one process at a time: migrations, the groups and the job store's table."""
        if self.locks is None:
            yield
            return
        await self.locks.open()
        try:
            await self.locks.lock(STARTUP)
            try:
                yield
            finally:
                await self.locks.unlock(STARTUP)
        except BaseException:  # start-up failed: no lock outlives it
            await self.locks.close()
            raise

    async def join(self) -> None:
        """Take this process's account and groups; become the scheduler if nobody is."""
        groups = self.app.config.onebot.groups
        if self.locks is not None:
            if not self.account:
                raise ConfigError("onebot.self_id", "missing", "self_id")
            if not await self.locks.try_lock(account_key(self.account)):
                raise ConfigError("onebot.self_id", "account_running", value=self.account)
        if self.account:
            async with self.app.db.transaction() as s:
                repo = Repo(s)
                routes = await repo.served.routes()
                for group_id in groups:
                    other = routes.get(group_id, self.account)
                    if other != self.account and await self._running(other):
                        raise ConfigError(
                            "onebot.groups", "group_served", value=group_id, choices=[str(other)]
                        )
                await repo.served.register(
                    self.account,
                    groups,
                    self.app.config.bot.listen,
                    self.app.clock.now(),
                    only=self.locks is None,
                )
        self.leader = self.locks is None or await self.locks.try_lock(SCHEDULER)
        log.info(
            "account %s, groups %s: %s",
            self.account or "(learnt from events)",
            sorted(groups),
            "runs the scheduler" if self.leader else "waits for the scheduler lock",
        )
        await self.refresh()

    async def _running(self, account: int) -> bool:
        return self.locks is not None and await self.locks.held(account_key(account))

    async def refresh(self) -> None:
        """Read which account serves which group."""
        async with self.app.db.reader() as s:
            routes = await Repo(s).served.routes()
        self.app.routes = routes
        self.app.groups = self.app.own_groups | set(routes)

    def start(self) -> None:
        if self.locks is not None:
            self._task = asyncio.create_task(self._run(), name="cluster")

    async def leave(self) -> None:
        """Stop polling and end the lock session (its locks go with it)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.locks is not None:
            await self.locks.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            await self.poll()

    async def poll(self) -> None:
        """One look: keep or take the locks, and read the groups again."""
        try:
            await self._poll()
        except Exception as exc:
            await self._lost(exc)

    async def _poll(self) -> None:
        assert self.locks is not None
        if self.locks.conn is None:  # reconnect after a lost session
            await self.locks.open()
            if not await self.locks.try_lock(account_key(self.account)):
                log.error("account %s is now served by another process", self.account)
        if self.leader:
            await self.locks.ping()
            self.app.scheduler.wakeup()  # jobs other processes wrote meanwhile
        elif await self.locks.try_lock(SCHEDULER):
            self.leader = True
            self.app.scheduler.resume()
            log.info("scheduler lock taken: this process runs the scheduled jobs now")
        await self.refresh()

    async def _lost(self, exc: Exception) -> None:
        """The lock session or the database is gone: stop running jobs at once and
        end the session (reopened at the next poll), so no lock outlives the pause."""
        if self.leader:
            self.leader = False
            self.app.scheduler.pause()
            log.warning("scheduler lock lost (%s): jobs paused until it is taken again", exc)
        else:
            log.warning("cluster poll failed: %s", exc)
        if self.locks is not None:
            await self.locks.close()
