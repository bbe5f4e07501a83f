"""The sandbox page in headless Chromium: pick a member, submit, see the receipt."""

from __future__ import annotations

import os
import socket

import pytest
from aiohttp import web

from bot.sandbox import make_demo_app
from handlers import ROUTERS

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
    app = make_demo_app(tmp_path / "demo.db", "127.0.0.1", port, ROUTERS)
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


async def test_history_stays_put_unread_mark_and_export_download(demo_site, tmp_path):
    from openpyxl import load_workbook
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await browser.new_page(viewport={"width": 1200, "height": 700})
        await page.goto(demo_site + "/")
        await page.select_option("#speaker", "10001")
        for i in range(4):  # enough lines to scroll
            await page.fill("#text", "/单位")
            await page.click("#send")
            await expect(page.locator(".line.bot")).to_have_count(i + 1, timeout=10_000)
        log = page.locator("#log")
        assert await log.evaluate("e => e.scrollHeight > e.clientHeight + 200")
        # reading history: a line arriving meanwhile does not pull the log down
        await log.evaluate("e => { e.scrollTop = 0; }")
        await page.evaluate(
            """() => fetch("/sandbox/say", {method: "POST", headers: {"Content-Type": "application/json"},
                body: JSON.stringify({user_id: 10020, text: "/帮助"})})"""
        )
        await expect(page.locator(".line.bot")).to_have_count(5, timeout=10_000)
        assert await log.evaluate("e => e.scrollTop") == 0
        # back at the bottom, the log follows new lines again
        await log.evaluate("e => { e.scrollTop = e.scrollHeight; }")
        await page.fill("#text", "/约稿列表")
        await page.click("#send")
        await expect(page.locator(".line.bot")).to_have_count(6, timeout=10_000)
        assert await log.evaluate("e => e.scrollHeight - e.scrollTop - e.clientHeight < 40")

        # a private answer marks the 私聊 tab until it is opened
        unread = page.locator("#unread")
        await expect(unread).to_be_hidden()
        await page.fill("#text", "/稿件 G1")
        await page.click("#send")
        await expect(unread).to_have_text("1", timeout=10_000)
        await page.click("#tab-private")
        await expect(unread).to_be_hidden()
        await expect(page.locator(".line.bot .text", has_text="稿件G1《")).to_have_count(1)
        await page.click("#tab-group")

        # the export arrives after its announcement, as a link that downloads the workbook
        await page.fill("#text", "/导出 月")
        await page.click("#send")
        link = page.locator(".line.bot .text a", has_text=".xlsx")
        await expect(link).to_have_count(1, timeout=15_000)
        texts = await page.locator(".line.bot .text").all_inner_texts()
        announced = next(i for i, t in enumerate(texts) if "已生成，正在发送" in t)
        assert announced < next(i for i, t in enumerate(texts) if t.endswith(".xlsx"))
        async with page.expect_download() as info:
            await link.click()
        download = await info.value
        assert download.suggested_filename.endswith(".xlsx")
        path = tmp_path / download.suggested_filename
        await download.save_as(path)
        assert load_workbook(path).sheetnames == ["排名", "稿件"]
        await browser.close()


async def test_phone_width_has_no_horizontal_clipping(demo_site, tmp_path):
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await browser.new_page(viewport={"width": 390, "height": 844})
        await page.goto(demo_site + "/")
        await expect(page.locator("#speaker option[value='10020']")).to_have_count(1)
        await page.select_option("#speaker", "10020")
        await page.fill("#text", "/帮助")
        await page.click("#send")
        await expect(page.locator(".line.bot")).to_have_count(1, timeout=10_000)
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        for selector in ("#send", "#upload", "#tab-private", "#ff-next", ".line.bot .text"):
            box = await page.locator(selector).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, selector
        await page.screenshot(path=str(tmp_path / "sandbox-390.png"), full_page=True)
        await browser.close()
