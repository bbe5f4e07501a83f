"""The sandbox page in headless Chromium: pick a member, submit, see the receipt."""

from __future__ import annotations

import os
import socket

import pytest
from aiohttp import web

from bot.sandbox import make_demo_app

pytestmark = pytest.mark.sqlite_only("xinxibot demo is SQLite by design (DESIGN §7)")

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not (os.path.exists(CHROMIUM) or os.environ.get("CI")):
    pytest.skip(
        "Debian chromium is not installed (apt-get install chromium fonts-noto-cjk)",
        allow_module_level=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def demo_site(tmp_path):
    port = free_port()
    app = make_demo_app(tmp_path / "demo.db", "127.0.0.1", port)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_submission_round_trip_in_the_browser(demo_site, tmp_path):
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await browser.new_page(viewport={"width": 1200, "height": 800})
        await page.goto(demo_site + "/")
        await expect(page.locator("#speaker option[value='10020']")).to_have_count(1)
        await page.select_option("#speaker", "10020")
        await page.fill(
            "#text", "/报送 #经验 城关镇沙盒测试稿件\n今年以来，城关镇扎实推进各项工作。"
        )
        await page.click("#send")
        receipt = page.locator(".line.bot .text", has_text="已收到 城关镇《城关镇沙盒测试稿件》")
        await expect(receipt).to_have_count(1, timeout=10_000)
        await expect(page.locator(".line.me .text", has_text="/报送 #经验")).to_have_count(1)
        # a coordinator looks at the draft; the full text arrives in the private tab
        await page.select_option("#speaker", "10001")
        number = (await receipt.inner_text()).split("编号")[1].split("，")[0]
        await page.fill("#text", f"/稿件 {number}")
        await page.click("#send")
        await expect(
            page.locator(".line.bot .text", has_text="全文和处理记录已私信发送")
        ).to_have_count(1, timeout=10_000)
        await page.click("#tab-private")
        await expect(
            page.locator(".line.bot .text", has_text="今年以来，城关镇扎实推进各项工作。")
        ).to_have_count(1)
        await page.screenshot(path=str(tmp_path / "sandbox.png"))
        await browser.close()


async def test_fast_forward_fires_the_seeded_topic_reminder(demo_site):
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await browser.new_page(viewport={"width": 1200, "height": 800})
        await page.goto(demo_site + "/")
        await expect(page.locator("#next-job")).not_to_have_text("下一个定时任务：—")
        reminder = page.locator(
            ".line.bot .text", has_text="【约稿提醒】Y1《关于冬季安全生产的经验做法》"
        )
        notes = page.locator(".line.system .text", has_text="沙盒时间已快进到")
        for clicks in range(1, 6):  # the weekly report may come first
            await page.click("#ff-next")
            await expect(notes).to_have_count(clicks, timeout=10_000)
            if await reminder.count():
                break
        await expect(reminder).to_have_count(1)
        text = await reminder.inner_text()
        assert "城关镇" in text and "文江镇" in text and "经信局" not in text  # 经信局 answered
        await browser.close()
