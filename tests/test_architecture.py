"""The core knows no workflow: bot/ reaches the workflows only through the routers it is
given (handlers.ROUTERS, passed in by the composition root bot/cli.py), and scheduled jobs
resolve through the registry built from them."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from bot.router import OFFICERS, Registry, Router, job_key
from bot.scheduler import run_job
from handlers import ROUTERS

from .conftest import COORDINATOR

BOT = Path(__file__).resolve().parents[1] / "bot"
COMPOSITION_ROOT = "cli.py"


def workflow_imports(source: str) -> list[str]:
    """Every import of the handlers package in `source` (a module of bot/): top-level or
    inside a function, absolute, relative (`from .. import handlers`) or by importlib
    (a name computed at run time, as a stored job target was, counts as one)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 or node.level >= 2:  # level 1 stays inside bot/
                names = [node.module] if node.module else [a.name for a in node.names]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__"):
                first = node.args[0]  # a computed name may be a workflow: reported as such
                names = [str(first.value) if isinstance(first, ast.Constant) else "handlers?"]
        found += [n for n in names if n.startswith(("handlers.", "handlers?")) or n == "handlers"]
    return found


def test_no_module_of_bot_imports_a_workflow():
    modules = sorted(BOT.glob("*.py"))
    assert len(modules) > 10
    offenders = {
        path.name: workflow_imports(path.read_text(encoding="utf-8"))
        for path in modules
        if path.name != COMPOSITION_ROOT
    }
    assert {name: found for name, found in offenders.items() if found} == {}
    assert workflow_imports((BOT / COMPOSITION_ROOT).read_text(encoding="utf-8"))  # the root


def test_the_guard_sees_every_kind_of_import():
    source = (
        "from handlers import drafts\n"
        "import handlers.files\n"
        "from .. import handlers\n"
        "def later():\n"
        "    from handlers.topics import schedule_topic\n"
        "    importlib.import_module('handlers.quotas')\n"
        "    return getattr(importlib.import_module(target.partition(':')[0]), 'job')\n"
        "from .router import Router\n"
        "import handlersmith\n"
    )
    assert workflow_imports(source) == [
        "handlers",
        "handlers.files",
        "handlers",
        "handlers.topics",
        "handlers.quotas",
        "handlers?",
    ]


def test_stored_job_targets_stay_registered_under_their_names():
    """Job rows in deployed databases name these targets; they must keep resolving."""
    jobs = Registry(ROUTERS).jobs
    assert {
        "handlers.topics:send_reminder",
        "handlers.topics:close_at_deadline",
        "handlers.quotas:reminder_job",
        "handlers.quotas:base_points_job",
        "handlers.standings:report_job",
    } <= set(jobs)
    assert all(job_key(job) == key for key, job in jobs.items())


def test_the_registry_refuses_ambiguous_registrations():
    def router_with(name: str, register) -> Router:
        router = Router(name)
        register(router)
        return router

    async def handler(ctx, arg) -> None:
        return None

    async def job(app) -> None:
        return None

    def command(word: str):
        return lambda r: r.command(word, roles=OFFICERS)(handler)

    with pytest.raises(ValueError, match="registered twice"):
        Registry([router_with("a", command("报送")), router_with("b", command("报送"))])
    with pytest.raises(ValueError, match="included twice"):
        Registry([Router("a"), Router("a")])
    with pytest.raises(ValueError, match="second file handler"):
        Registry([router_with(n, lambda r: r.file(roles=OFFICERS)(handler)) for n in "ab"])
    with pytest.raises(ValueError, match=r"job .* registered twice"):
        Registry([router_with(n, lambda r: r.job(job)) for n in "ab"])


async def test_every_scheduled_job_resolves_through_the_registry(group, caplog):
    await group.say(COORDINATOR, "/约稿 冬季安全生产 截止11月30日17时 对象 城关镇")
    targets = set(group.bot.scheduler.targets())
    assert {"handlers.topics:send_reminder", "handlers.standings:report_job"} <= targets
    assert targets <= set(group.bot.registry.jobs)

    async def unregistered(app) -> None:
        return None

    with pytest.raises(ValueError, match="not a job registered"):
        group.bot.scheduler.at("stray", group.clock.now(), unregistered)
    with caplog.at_level(logging.ERROR, logger="bot.scheduler"):
        await run_job("handlers.gone:renamed_job", 1)  # a stored row whose target went away
    assert "handlers.gone:renamed_job is not registered" in caplog.text
