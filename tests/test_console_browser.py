"""The web console in headless Chromium: log in through the link /登录 sent privately, review
and adopt a draft, see the group notice reach the OneBot API, see the standings drawn; at
1366 px and on a 390 px phone. And the demo's button that opens it from the sandbox."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp import web
from sqlalchemy import select

from bot.sandbox import make_demo_app
from handlers import ROUTERS, review
from storage import demo
from storage.models import Draft, Member, Unit

from .conftest import COORDINATOR, GROUP, Harness, start_harness, until
from .test_sandbox import ARGS, CHROMIUM, free_port

if not (os.path.exists(CHROMIUM) or os.environ.get("CI")):
    pytest.skip("Debian chromium is not installed", allow_module_level=True)

LINK = re.compile(r"(http://\S+/console/login/[A-Za-z0-9_-]+)")
ADOPTED = {  # seeded drafts adopted over the past weeks, so the charts have something to draw
    "城关镇": ("县政务信息", "full"),
    "文江镇": ("政务信息快报", "full"),
    "经信局": ("县政务信息", "excerpt"),
    "县人民医院": ("省政府办公厅信息刊物", "full"),
}


@pytest.fixture
async def county(tmp_path, fake_onebot) -> AsyncIterator[Harness]:
    """The demo county (14 units, five weeks of drafts) behind the fake OneBot API, with
    some of its drafts adopted in the weeks they came in."""
    harness, server = await start_harness(tmp_path, fake_onebot)
    harness.bot.config.web.public_url = harness.base
    await demo.seed(harness.bot.db, harness.clock.now())
    now = harness.clock.now()
    async with harness.bot.db.reader() as s:
        coordinator = (
            await s.execute(select(Member).where(Member.im_id == COORDINATOR))
        ).scalar_one()
        drafts = (
            await s.execute(
                select(Draft, Unit.name).join(Unit, Unit.id == Draft.unit_id).order_by(Draft.id)
            )
        ).all()
    for draft, unit in drafts:
        # (the demo's printed bulletin issues adopted some already)
        adopted = draft.status == "adopted"
        if unit in ADOPTED and draft.submitted_at < now - timedelta(days=2) and not adopted:
            harness.clock.set(draft.submitted_at + timedelta(days=1))
            name, form = ADOPTED[unit]
            async with harness.bot.acting(coordinator) as ctx:
                outlet = ctx.app.rules.outlet_named(name)
                await review.adopt(ctx, await ctx.repo.drafts.get(draft.id), outlet, form)
            await harness.settle()  # sent then, not dropped as a day old
    harness.clock.set(now)
    await harness.settle()
    harness.fake.clear()
    yield harness
    await harness.close()
    await server.close()


async def test_review_and_standings_in_the_browser(county, tmp_path):
    from playwright.async_api import async_playwright, expect

    h = county
    h.names[COORDINATOR] = "王科长"
    await h.tell(COORDINATOR, "/登录")
    link = LINK.search(h.fake.texts("private", COORDINATOR)[-1]).group(1)
    async with h.bot.db.reader() as s:
        units = (await s.execute(select(Unit.name).order_by(Unit.id))).scalars().all()
        waiting = (
            (
                await s.execute(
                    select(Draft).where(Draft.status == "submitted").order_by(Draft.id.desc())
                )
            )
            .scalars()
            .first()
        )
    h.fake.clear()

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await browser.new_page(viewport={"width": 1366, "height": 900})
        fetched: list[str] = []  # offline: every asset comes from the bot itself
        page.on("request", lambda request: fetched.append(request.url))
        await page.goto(link)  # the link from the private message: a button, not a login yet
        await page.click("#login")
        await expect(page).to_have_url(re.compile(r"/console/drafts$"))
        await expect(page.locator("header .me")).to_contain_text("王科长（协调员）")

        # 收稿: the newest draft awaiting review, its full text, adopted from the rule file
        await page.click(f"text={waiting.title}")
        detail = page.locator("#detail")
        await expect(detail.locator("h2")).to_have_text(f"{waiting.number}《{waiting.title}》")
        await expect(detail.locator(".body")).to_contain_text("今年以来")
        await page.select_option("#adopt-outlet", "县政务信息|full")
        await page.fill("input[name=issue]", "12")
        await page.screenshot(path=str(tmp_path / "drafts-1366.png"), full_page=True)
        await page.click("#adopt")
        notice = "被《县政务信息》全文采用，积"
        await expect(page.locator(".note.done")).to_contain_text(notice)
        await expect(detail.locator(".status").first).to_have_text("已采用")
        await expect(detail.locator(".history")).to_contain_text("采用（王科长）：县政务信息")
        await page.screenshot(path=str(tmp_path / "drafts-1366-adopted.png"))
        await until(lambda: any(notice in t for t in h.fake.texts("group", GROUP)), h)
        [group_notice] = [t for t in h.fake.texts("group", GROUP) if notice in t]
        assert f"《{waiting.title}》（{waiting.number}）被《县政务信息》全文采用" in group_notice
        mentioned = [
            s["data"]["qq"] for _, _, segs in h.fake.sent() for s in segs if s["type"] == "at"
        ]
        assert mentioned  # the unit's officer is @-mentioned, as /采用 does

        # 排行: the table, the year's points per unit and each unit's last 12 weeks
        await page.click("nav.tabs >> text=排行")
        await expect(page).to_have_url(re.compile(r"/console/standings$"))
        bars = page.locator("svg.points-chart rect.bar")
        await expect(bars).to_have_count(len(units))
        labels = await page.locator("svg.points-chart text.label").all_text_contents()
        assert set(labels) == {u if len(u) <= 9 else u[:8] + "…" for u in units}
        widths = [float(await b.get_attribute("width")) for b in await bars.all()]
        assert widths == sorted(widths, reverse=True) and widths[0] > 0 and widths[-1] == 0
        top = await page.locator("svg.points-chart rect.bar title").first.text_content()
        assert top.startswith("县人民医院：")  # 5 points per provincial adoption
        await expect(page.locator("svg.weekly-chart")).to_have_count(len(units))
        await expect(page.locator("svg.weekly-chart").first.locator("g.week")).to_have_count(12)
        weeks = (
            await page.locator("li.weekly-unit", has_text="城关镇")
            .locator("g.week title")
            .all_text_contents()
        )
        assert len(weeks) == 12 and any("采用1篇" in w for w in weeks)
        assert "报送0篇，采用0篇" in weeks[0]  # twelve weeks ago: before the county existed
        await page.screenshot(path=str(tmp_path / "standings-1366.png"), full_page=True)
        assert fetched and all(url.startswith(h.base + "/console/") for url in fetched)
        assert any(url.endswith("/console/static/console.css") for url in fetched)

        # the same pages on a phone
        phone = await browser.new_page(viewport={"width": 390, "height": 844})
        await phone.context.add_cookies(await page.context.cookies())
        for path, name in (
            (f"/console/drafts?state=all&draft={waiting.number}", "drafts-390.png"),
            ("/console/standings", "standings-390.png"),
            ("/console/topics", "topics-390.png"),
            ("/console/quotas", "quotas-390.png"),
        ):
            await phone.goto(h.base + path)
            await expect(phone.locator("header .me")).to_contain_text("王科长")
            assert await phone.evaluate("document.documentElement.scrollWidth") <= 390, path
            await phone.screenshot(path=str(tmp_path / name))  # what the phone shows first
            await phone.screenshot(path=str(tmp_path / f"full-{name}"), full_page=True)
        for selector in ("#adopt", "#return", "nav.tabs", "#detail .body"):
            await phone.goto(h.base + f"/console/drafts?state=all&draft={waiting.number}")
            box = await phone.locator(selector).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, selector
        await browser.close()


@pytest.fixture
async def demo_site(tmp_path) -> AsyncIterator[str]:
    port = free_port()
    runner = web.AppRunner(make_demo_app(tmp_path / "demo.db", "127.0.0.1", port, ROUTERS))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_the_sandbox_opens_the_console_as_the_demo_coordinator(demo_site):
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await browser.new_page(viewport={"width": 1366, "height": 800})
        await page.goto(demo_site + "/")
        async with page.context.expect_page() as opened:
            await page.click("#console")
        console = await opened.value
        await expect(console).to_have_url(re.compile(r"/console/drafts$"))
        await expect(console.locator("header .me")).to_contain_text("王科长（协调员）")
        await expect(console.locator(".draft-list li").first).to_be_visible()
        await browser.close()
