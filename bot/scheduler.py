"""The scheduling facade on APScheduler 3.x.

* Jobs live in a persistent SQLAlchemy job store in the bot's database, so
  they survive restarts. Every job is one-shot (a date), computed by our own
  calendar code (working days, quiet hours), with a stable id and
  `replace_existing`.
* The stored callable is always `bot.scheduler:run_job`, with the target as a
  "module:function" string and int/str arguments; `run_job` looks the target
  up among the jobs registered on the routers (`@router.job`) and calls it
  with the running BotApp. `targets()` lists what the store references so a
  test can check that every stored job is still registered.
* misfire_grace_time is set per job to how long the job stays useful (a
  deadline reminder: until the deadline); coalesce is on, so a job missed
  while the bot was down runs once on restart if still useful, never twice.
* Time comes from the injected clock: APScheduler reads `datetime.now` in
  two modules, which we point at a clock-aware subclass. Tests and the
  sandbox move the clock and call `run_due()`; nothing sleeps.
* A job stays in the store until it has run (`_KeepUntilRun`): a process
  killed while a job runs leaves it there, and the next scheduler runs it
  again. Jobs are idempotent (each writes its key with its effects).
* A job that runs late (the bot was down when it came due) outside posting
  times (quiet hours, non-working days) is put off to the next posting time,
  if still useful then: its posts go out with the others of that moment
  instead of at 22:00 (`planned`/`useful_until` travel with the job).
* Several processes on one PostgreSQL database all write jobs to the shared
  store, but only the one holding the scheduler lock (bot/cluster.py) runs
  them: the others start paused and resume when they get the lock.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import apscheduler.executors.base as aps_executors
import apscheduler.schedulers.base as aps_base
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import event

from .clock import Clock
from .router import Job, job_key

if TYPE_CHECKING:
    from .app import BotApp

log = logging.getLogger(__name__)

JOB_TABLE = "apscheduler_jobs"
# A running job's run time moves this far ahead: if its process dies, this is
# when the next scheduler runs it again.
RERUN_AFTER = timedelta(seconds=10)
DEFAULT_GRACE_SECONDS = 3600  # how long a job stays useful when its planner says nothing
# A job that starts this long after its planned time ran late (the bot was down).
LATE_AFTER = timedelta(minutes=1)
_current_app: BotApp | None = None


class _ClockDatetime(datetime):
    """datetime whose now() follows the injected clock (APScheduler's only time source)."""

    clock: Clock | None = None

    @classmethod
    def now(cls, tz=None):  # type: ignore[override]
        if cls.clock is None:
            return datetime.now(tz)
        aware = cls.clock.aware_now()
        return aware.astimezone(tz) if tz is not None else aware.replace(tzinfo=None)


def _install_clock(clock: Clock | None) -> None:
    _ClockDatetime.clock = clock
    aps_base.datetime = _ClockDatetime if clock is not None else datetime
    aps_executors.datetime = _ClockDatetime if clock is not None else datetime


def sync_url(url: str) -> str:
    """The job store is synchronous: the same database through a sync driver."""
    if url.startswith("sqlite+aiosqlite"):
        return "sqlite" + url[len("sqlite+aiosqlite") :]
    if url.startswith("postgresql+asyncpg"):
        return "postgresql+psycopg" + url[len("postgresql+asyncpg") :]
    return url


def _store_options(url: str) -> dict[str, Any]:
    """The store's driver blocks the event loop: on PostgreSQL, never for long."""
    if url.startswith("sqlite"):
        return {}
    return {"pool_pre_ping": True, "connect_args": {"connect_timeout": 5}}


async def run_job(
    target: str,
    *args: Any,
    job_id: str | None = None,
    planned: str | None = None,
    useful_until: str | None = None,
) -> None:
    """What every stored job calls: the registered target with the running app first;
    a late job outside posting times is put off to the next posting time instead."""
    app = _current_app
    if app is None:
        log.error("job %s fired without a running bot", target)
        return
    job = app.registry.jobs.get(target)
    if job is None:
        log.error("job target %s is not registered on any router; job skipped", target)
        return
    now = app.clock.now()
    if (
        job_id is not None
        and planned is not None
        and now - datetime.fromisoformat(planned) > LATE_AFTER
        and not app.posting.allowed(now)
    ):
        app.scheduler.put_off(job_id, job, args, datetime.fromisoformat(useful_until or planned))
        return
    await job(app, *args)


class _KeepUntilRun(AsyncIOScheduler):
    """APScheduler removes a one-shot job from its store when it hands the job to
    the executor, before the job runs: a process killed in between loses it.
    Here a running job stays in the store with its run time moved RERUN_AFTER
    ahead (a lease) and is removed when it has run, unless it planned itself
    anew under the same id meanwhile."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._leases: dict[str, datetime] = {}

    def remove_job(self, job_id: str, jobstore: str | None = None) -> None:
        running = self._lookup_executor("default")._instances.get(job_id)
        if running and self.state != aps_base.STATE_STOPPED:
            lease = _ClockDatetime.now(self.timezone) + RERUN_AFTER
            self._leases[job_id] = self.modify_job(
                job_id, jobstore, next_run_time=lease
            ).next_run_time
            return
        self._leases.pop(job_id, None)
        super().remove_job(job_id, jobstore)

    def ran(self, job_id: str) -> None:
        """The job has run (or missed its time): its lease ends."""
        lease = self._leases.pop(job_id, None)
        if lease is None:
            return
        job = self.get_job(job_id)
        if job is not None and job.next_run_time == lease:
            super().remove_job(job_id)


class Scheduler:
    def __init__(self, app: BotApp, database_url: str, clock: Clock) -> None:
        self.app, self.clock = app, clock
        store = SQLAlchemyJobStore(
            url=sync_url(database_url),
            tablename=JOB_TABLE,
            engine_options=_store_options(database_url),
        )
        self.scheduler = _KeepUntilRun(
            jobstores={"default": store},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": DEFAULT_GRACE_SECONDS,
            },
            timezone=clock.tz,
        )
        # The store writes the bot's database through a synchronous connection of its own:
        # a group of event transactions left open (storage/db.py) is committed first, or the
        # store would wait for SQLite's lock while blocking the loop that group needs.
        event.listen(store.engine, "begin", lambda _conn: app.db.commit_group_now())

    # ------------------------------------------------------------ lifecycle

    def start(self, paused: bool = False) -> None:
        """Open the job store; `paused`: keep jobs stored but run none until `resume()`."""
        global _current_app
        _current_app = self.app
        _install_clock(self.clock)
        self.scheduler.add_listener(
            self._on_job_done, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED
        )
        self.scheduler.start(paused=paused)

    @property
    def running(self) -> bool:
        """Jobs are run here (not paused, not stopped)."""
        return self.scheduler.state == aps_base.STATE_RUNNING

    def resume(self) -> None:
        self.scheduler.resume()

    def pause(self) -> None:
        self.scheduler.pause()

    def wakeup(self) -> None:
        """Look at the store again (jobs written by other processes)."""
        if self.running:
            self.scheduler.wakeup()

    def shutdown(self) -> None:
        global _current_app
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        _current_app = None
        _install_clock(None)

    # ------------------------------------------------------------ jobs

    def at(
        self,
        job_id: str,
        when: datetime,
        job: Job,
        *args: int | str,
        useful_until: datetime | None = None,
    ) -> None:
        """Run `job(app, *args)` at `when` (naive local time); replaces a job of the same id.
        `job` must be registered on a router (`@router.job`)."""
        target = job_key(job)
        if self.app.registry.jobs.get(target) is not job:
            raise ValueError(f"{target} is not a job registered on a router")
        useful_until = useful_until or when + timedelta(seconds=DEFAULT_GRACE_SECONDS)
        self.scheduler.add_job(
            run_job,
            trigger="date",
            run_date=when.replace(tzinfo=self.clock.tz),
            args=[target, *args],
            kwargs={
                "job_id": job_id,
                "planned": when.isoformat(),
                "useful_until": useful_until.isoformat(),
            },
            id=job_id,
            name=target,
            replace_existing=True,
            misfire_grace_time=max(int((useful_until - when).total_seconds()), 1),
        )
        self.scheduler.wakeup()

    def put_off(self, job_id: str, job: Job, args: tuple, useful_until: datetime) -> None:
        """A late job, due outside posting times: again at the next posting time, or
        dropped (logged) when it is no longer useful by then."""
        when = self.app.posting.next_allowed(self.clock.now())
        if when > useful_until:
            log.warning("job %s ran late and is no longer useful at %s: skipped", job_id, when)
            return
        log.info("job %s ran late outside posting times: put off to %s", job_id, when)
        self.at(job_id, when, job, *args, useful_until=useful_until)

    def ensure(
        self,
        job_id: str,
        when: datetime,
        job: Job,
        *args: int | str,
        useful_until: datetime | None = None,
    ) -> None:
        """Like `at`, but keeps an existing job (a recurring job's next run survives restarts)."""
        if self.scheduler.get_job(job_id) is None:
            self.at(job_id, when, job, *args, useful_until=useful_until)

    def cancel(self, prefix: str) -> None:
        """Remove every job whose id starts with `prefix`."""
        for job in self.scheduler.get_jobs():
            if job.id.startswith(prefix):
                job.remove()

    def upcoming(self) -> list[tuple[str, datetime]]:
        """(job id, naive local run time), soonest first."""
        jobs = [j for j in self.scheduler.get_jobs() if j.next_run_time is not None]
        return [
            (j.id, j.next_run_time.astimezone(self.clock.tz).replace(tzinfo=None)) for j in jobs
        ]

    def targets(self) -> list[str]:
        return [job.args[0] for job in self.scheduler.get_jobs()]

    async def run_due(self) -> None:
        """Fire what is due by the clock now and wait until it has run and its
        messages are delivered (tests and the sandbox call this after moving the clock)."""
        executor = self.scheduler._lookup_executor("default")
        for _ in range(20):  # a job may schedule another that is due at once
            self.scheduler.wakeup()  # runs on the next loop iteration
            await asyncio.sleep(0)
            pending = list(executor._pending_futures)
            if not pending:
                break
            await asyncio.gather(*pending, return_exceptions=True)
        await self.app.sender.drained()

    def _on_job_done(self, event: JobExecutionEvent) -> None:
        self.scheduler.ran(event.job_id)
        if event.code == EVENT_JOB_EXECUTED:
            log.info("job %s ran (scheduled for %s)", event.job_id, event.scheduled_run_time)
        elif event.code == EVENT_JOB_MISSED:
            log.warning(
                "job %s missed its run time %s (no longer useful)",
                event.job_id,
                event.scheduled_run_time,
            )
        elif event.exception is not None:
            log.error("job %s failed: %r", event.job_id, event.exception)
