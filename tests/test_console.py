"""The web console over HTTP: login through the chat, sessions, CSRF and Origin, the role
matrix over every console route, and actions that run the chat's operations."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
from sqlalchemy import select

from bot.router import Registry
from handlers import ROUTERS
from storage.models import ConsoleLogin, ConsoleSession, DraftEvent, Member, Role, Unit
from storage.queries import Repo

from .conftest import COORDINATOR, GROUP, Harness, populate, start_harness

OFFICER, OTHER_OFFICER, LEADER = 10020, 10030, 10050
TABLE = Registry(ROUTERS)
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
LINK = re.compile(r"(http://\S+/console/login/[A-Za-z0-9_-]+)")


class Visitor:
    """A browser: its own cookie jar, logging in through the link /登录 sends privately."""

    def __init__(self, harness: Harness) -> None:
        self.h = harness
        self.client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def close(self) -> None:
        await self.client.close()

    async def request_link(self, im_id: int) -> str:
        await self.h.tell(im_id, "/登录")
        return LINK.search(self.h.fake.texts("private", im_id)[-1]).group(1)

    async def login(self, im_id: int) -> Visitor:
        link = await self.request_link(im_id)
        status, text = await self.get(link)
        assert status == 200 and "登录网页控制台" in text
        status, location = await self.post(link)
        assert (status, location) == (303, "/console/"), text
        status, first_page = await self.get("/console/")
        assert status == 303
        await self.get(first_page)  # picks up the CSRF token
        return self

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.h.base + path

    async def get(self, path: str) -> tuple[int, str]:
        async with self.client.get(self.url(path), allow_redirects=False) as resp:
            text = await resp.text()
            if resp.status == 303:
                text = resp.headers["Location"]
            found = CSRF.search(text)
            if found:
                self.csrf = found.group(1)
            return resp.status, text

    async def page(self, path: str) -> str:
        """A page the visitor may open, its text unescaped."""
        status, text = await self.get(path)
        assert status == 200, (path, status, text)
        return html.unescape(text)

    async def post(
        self, path: str, fields: dict | list | None = None, origin: str | None = "own"
    ) -> tuple[int, str]:
        headers = {"Origin": self.h.base if origin == "own" else origin} if origin else {}
        async with self.client.post(
            self.url(path), data=fields or {}, headers=headers, allow_redirects=False
        ) as resp:
            text = (await resp.read()).decode("utf-8", "replace")  # a download is binary
            return resp.status, resp.headers.get("Location", text)

    async def act(self, action: str, back: str = "/console/drafts", **fields) -> tuple[int, str]:
        """Post a console form with the session's CSRF token; on an answer, the page it
        came back to, unescaped."""
        data = [("csrf", self.csrf), ("back", back)]
        for key, value in fields.items():  # a list: a repeated field (checkboxes)
            data += [(key, str(v)) for v in (value if isinstance(value, list) else [value])]
        status, text = await self.post(f"/console/action/{action}", data)
        await self.h.settle()
        if status == 303:
            return status, await self.page(text)
        return status, html.unescape(text)


@pytest.fixture
async def desk(tmp_path, fake_onebot) -> AsyncIterator[Harness]:
    """The usual group (two units, their officers) with the console's public address set,
    a leader, and a draft of 城关镇 awaiting review."""
    harness, server = await start_harness(tmp_path, fake_onebot)
    harness.bot.config.web.public_url = harness.base
    await populate(harness)
    await make_member(harness, LEADER, "刘主任", Role.leader)  # no command makes leaders yet
    await harness.say(OFFICER, "/报送 #经验 城关镇推进人居环境整治\n今年以来，城关镇……")
    harness.fake.clear()
    yield harness
    await harness.close()
    await server.close()


@pytest.fixture
async def visitors(desk) -> AsyncIterator[callable]:
    opened: list[Visitor] = []

    async def visitor(im_id: int | None = None) -> Visitor:
        v = Visitor(desk)
        opened.append(v)
        return await v.login(im_id) if im_id is not None else v

    yield visitor
    for v in opened:
        await v.close()


async def make_member(h: Harness, im_id: int, name: str, role: Role) -> None:
    async with h.bot.db.transaction() as s:
        member = await Repo(s).members.ensure(im_id, name, h.clock.now())
        member.role = role


async def latest_draft(h: Harness) -> int:
    return (await h.drafts())[-1].id


# ------------------------------------------------------------------ login


async def test_login_link_comes_privately_and_opens_a_session(desk, visitors):
    coordinator = await visitors(COORDINATOR)
    reply = desk.fake.texts("private", COORDINATOR)[-1]
    assert reply.startswith("网页控制台登录链接（10分钟内有效，只能使用一次，请勿转发）：")
    assert f"{desk.base}/console/login/" in reply
    text = await coordinator.page("/console/drafts")
    assert "王科长（协调员）" in text and "城关镇推进人居环境整治" in text
    async with desk.bot.db.reader() as s:
        [login] = (await s.execute(select(ConsoleLogin))).scalars().all()
        [session] = (await s.execute(select(ConsoleSession))).scalars().all()
    token = LINK.search(reply).group(1).rsplit("/", 1)[1]
    assert login.used_at is not None and token not in login.token_hash  # only a hash is kept
    cookie = next(c for c in coordinator.client.cookie_jar if c.key == "xinxibot_console")
    assert cookie.value not in session.id_hash
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/console/"
    assert not cookie["secure"]  # http here; https in public_url makes it Secure


async def test_login_is_refused_in_the_group_and_to_strangers(desk):
    await desk.say(COORDINATOR, "/登录")
    assert desk.fake.texts("group", GROUP)[-1].endswith(
        "登录链接只在私聊中发送，请私聊机器人发送 /登录。"
    )
    assert "/console/login/" not in " ".join(desk.fake.texts())
    await desk.tell(10099, "/登录")  # a stranger gets the registration hint, no link
    assert "/console/login/" not in " ".join(desk.fake.texts())
    async with desk.bot.db.reader() as s:
        assert (await s.execute(select(ConsoleLogin))).first() is None


async def test_the_link_preview_does_not_spend_it_and_a_link_works_once(desk, visitors):
    first, second = await visitors(), await visitors()
    link = await first.request_link(COORDINATOR)
    for _ in range(3):  # QQ's preview fetcher, the browser, a reload
        assert (await first.get(link))[0] == 200
    assert (await first.post(link))[0] == 303
    status, text = await second.post(link)  # reused: refused, no session
    assert status == 410 and "登录链接无效、已使用过或已超过10分钟" in text
    assert (await second.get(link))[0] == 410
    assert (await second.get("/console/drafts")) == (303, "/console/login")


async def test_an_expired_link_is_refused(desk, visitors):
    v = await visitors()
    link = await v.request_link(COORDINATOR)
    desk.clock.advance(timedelta(minutes=10))
    assert (await v.get(link))[0] == 410
    assert (await v.post(link))[0] == 410
    assert (await v.get("/console/drafts"))[1] == "/console/login"


async def test_a_login_post_from_another_site_is_refused(desk, visitors):
    v = await visitors()
    link = await v.request_link(COORDINATOR)
    assert (await v.post(link, origin="http://evil.example"))[0] == 403
    assert (await v.post(link, origin=None))[0] == 403
    assert (await v.post(link))[0] == 303  # not spent by the refused attempts


async def test_sessions_end_when_idle_after_a_day_and_at_logout(desk, visitors):
    v = await visitors(COORDINATOR)
    for _ in range(3):  # in use: kept alive past the idle time
        desk.clock.advance(timedelta(minutes=100))
        assert (await v.get("/console/drafts"))[0] == 200
    desk.clock.advance(timedelta(minutes=120))
    assert await v.get("/console/drafts") == (303, "/console/login?why=expired")
    assert "登录已超时" in (await v.page("/console/login?why=expired"))

    v = await visitors(COORDINATOR)
    for _ in range(23):  # busy all day: still, a day after the login it is over
        desk.clock.advance(timedelta(hours=1))
        assert (await v.get("/console/drafts"))[0] == 200
    desk.clock.advance(timedelta(hours=1))
    assert (await v.get("/console/drafts"))[1] == "/console/login?why=expired"

    phone, desktop = await visitors(COORDINATOR), await visitors(COORDINATOR)
    await desk.tell(COORDINATOR, "/退出登录")
    assert desk.fake.texts("private", COORDINATOR)[-1] == "已退出网页控制台（结束2个登录）。"
    for browser in (phone, desktop):
        assert (await browser.get("/console/drafts"))[1] == "/console/login"

    v = await visitors(COORDINATOR)  # the page's own button ends this session only
    other = await visitors(COORDINATOR)
    assert await v.post("/console/logout", {"csrf": v.csrf}) == (303, "/console/login?why=logout")
    assert (await v.get("/console/drafts"))[1] == "/console/login"
    assert (await other.get("/console/drafts"))[0] == 200


async def test_a_retired_officers_session_stops_at_once(desk, visitors):
    officer = await visitors(OFFICER)
    assert "城关镇推进人居环境整治" in await officer.page("/console/drafts")
    await desk.say(COORDINATOR, f"/注销 {OFFICER}")
    assert (await officer.get("/console/drafts")) == (303, "/console/login")
    async with desk.bot.db.reader() as s:
        assert (await s.execute(select(ConsoleSession))).first() is None
    await desk.register(OFFICER, "城关镇", "李明")  # registered again: the old cookie stays dead
    assert (await officer.get("/console/drafts"))[1] == "/console/login"


# ------------------------------------------------------------------ roles


PERSONAS = {
    "none": None,
    "officer": OFFICER,
    "other_officer": OTHER_OFFICER,
    "leader": LEADER,
    "coordinator": COORDINATOR,
}


# status per persona: no session, officer of 城关镇, officer of 经信局, leader, coordinator
PAGE_MATRIX = {
    "/console/": (303, 303, 303, 303, 303),  # to the first page the role may open
    "/console/drafts": (303, 200, 200, 403, 200),
    "/console/drafts?draft=G{g}": (303, 200, 403, 403, 200),  # a draft of 城关镇
    "/console/topics": (303, 403, 403, 403, 200),
    "/console/standings": (303, 200, 200, 200, 200),
    "/console/quotas": (303, 200, 200, 403, 200),
    "/console/units": (303, 403, 403, 403, 200),
    "/console/export": (303, 403, 403, 403, 200),
    "/console/bulletin": (303, 403, 403, 403, 200),
    "/console/log": (303, 403, 403, 403, 200),
    "/console/login": (200, 200, 200, 200, 200),  # how to log in
    "/console/static/console.css": (200, 200, 200, 200, 200),
}


async def test_role_matrix_over_every_console_route(desk, visitors):
    """Every page and every action × no session / officer / another unit's officer /
    leader / coordinator: the status, and what is shown."""
    g = await latest_draft(desk)
    people = {name: await visitors(im_id) for name, im_id in PERSONAS.items()}
    registered = {f"/console/{slug}" for slug in TABLE.pages}
    assert registered <= set(PAGE_MATRIX), "a new page needs its row here"
    table = {}
    for path, expected in PAGE_MATRIX.items():
        path = path.format(g=g)
        for (person, v), want in zip(people.items(), expected, strict=True):
            status, text = await v.get(path)
            table[(path, person)] = status
            assert status == want, (path, person, status)
            if status == 303 and path != "/console/":
                assert text == "/console/login"
            if status == 403:
                shown = html.unescape(text)
                title = desk.bot.renderer.labels["PAGE"].get(path.split("/")[2].split("?")[0])
                assert f"“{title}”仅限" in shown or "不属于您所在单位" in shown, (path, person)
    firsts = {person: (await v.get("/console/"))[1] for person, v in people.items()}
    assert firsts == {
        "none": "/console/login",
        "officer": "/console/drafts",
        "other_officer": "/console/drafts",
        "leader": "/console/standings",  # the only page a leader has
        "coordinator": "/console/drafts",
    }

    # outside the matrix: nothing else is reachable without a session, no file but ours
    anonymous = people["none"]
    assert "请在QQ私聊中向机器人发送 /登录" in await anonymous.page("/console/login")
    for path in ("/console/nothing", "/console"):
        assert (await anonymous.get(path))[1] == "/console/login", path
    assert (await anonymous.get("/console/static/console.py"))[0] == 404
    coordinator = people["coordinator"]
    assert (await coordinator.get("/console/static/console.py"))[0] == 404
    assert (await coordinator.get("/console/static/%2e%2e%2fconsole.py"))[0] == 404
    assert (await coordinator.get("/console/nothing"))[0] == 404

    # every action: only coordinators; without a session nothing runs
    desk.fake.clear()
    for name, spec in TABLE.actions.items():
        assert spec.roles == frozenset({Role.coordinator}), name
        for person, v in people.items():
            status, text = await v.act(name)  # the session's token, otherwise an empty form
            table[(f"POST /console/action/{name}", person)] = status
            if person == "none":
                assert (status, text) == (303, html.unescape(await v.page("/console/login")))
            elif person != "coordinator":
                assert status == 403 and "此操作仅限协调员使用" in text, (name, person)
            else:  # an empty form: refused as such, except 一键催报 and 导出 which need none
                want = {"remind_quotas": 303, "export": 200}.get(name, 400)
                assert status == want, (name, status, text)
    assert [d.status for d in await desk.drafts()] == ["submitted"]
    for person, v in people.items():  # the page's 退出 button
        status, where = await v.post("/console/logout", {"csrf": v.csrf})
        table[("POST /console/logout", person)] = status
        assert (status, where) == (303, "/console/login" + ("?why=logout" if v.csrf else ""))
    print_matrix(table, list(people))


def print_matrix(table: dict, people: list[str]) -> None:
    """The route × role table (pytest -s shows it)."""
    routes = list(dict.fromkeys(route for route, _ in table))
    print("\n| route | " + " | ".join(people) + " |")
    print("|---" * (len(people) + 1) + "|")
    for route in routes:
        print(f"| `{route}` | " + " | ".join(str(table[(route, p)]) for p in people) + " |")


async def test_an_officer_sees_only_the_own_unit_read_only(desk, visitors):
    await desk.say(OTHER_OFFICER, "/报送 经信局工业运行平稳\n正文。")
    officer = await visitors(OFFICER)
    text = await officer.page("/console/drafts?unit=2&state=all")
    assert "城关镇推进人居环境整治" in text and "经信局工业运行平稳" not in text
    g = await latest_draft(desk) - 1
    text = await officer.page(f"/console/drafts?draft=G{g}")
    assert "今年以来，城关镇……" in text and "/console/action/adopt" not in text
    status, text = await officer.act(
        "adopt", draft=f"G{g}", seen="submitted", outlet="县政务信息|full"
    )
    assert status == 403 and "此操作仅限协调员使用" in text
    assert [d.status for d in await desk.drafts()] == ["submitted", "submitted"]
    quota = await officer.page("/console/quotas")
    assert "一键催报" not in quota


# ------------------------------------------------------------------ CSRF and Origin


async def test_forged_missing_csrf_and_foreign_origins_are_refused(desk, visitors):
    v, other = await visitors(COORDINATOR), await visitors(OTHER_OFFICER)
    desk.fake.clear()  # the login links
    g = await latest_draft(desk)
    fields = {"draft": f"G{g}", "seen": "submitted", "outlet": "县政务信息|full"}
    cases = [
        ({**fields, "csrf": "0" * 64}, "own", 403, "页面已过期"),
        (fields, "own", 403, "页面已过期"),
        ({**fields, "csrf": v.csrf}, "http://evil.example", 403, "请求来源不符"),
        ({**fields, "csrf": v.csrf}, "null", 403, "请求来源不符"),
        ({**fields, "csrf": v.csrf}, None, 403, "请求来源不符"),
    ]
    for data, origin, status, words in cases:
        got, text = await v.post("/console/action/adopt", data, origin=origin)
        assert got == status and words in text, (data, origin)
    # another session's token is not this one's
    got, _ = await v.post("/console/action/adopt", {**fields, "csrf": other.csrf})
    assert got == 403
    await desk.settle()
    assert [d.status for d in await desk.drafts()] == ["submitted"]
    assert desk.fake.sent() == []
    assert (await v.act("adopt", **fields))[0] == 303  # the real form goes through


# ------------------------------------------------------------------ actions


async def test_adoption_in_the_console_sends_what_adopt_sends(desk, visitors):
    """The console's 采用 and the chat's /采用 (from private chat) send the same notices
    to the group and the officer; /稿件 names the acting coordinator."""
    await desk.say(OFFICER, "/报送 城关镇第二篇稿件\n正文二。")
    first, second = [d.id for d in await desk.drafts()]
    desk.fake.clear()
    await desk.tell(COORDINATOR, f"/采用 G{first} 县 全文 第3期")
    by_chat = desk.fake.sent()

    def masked(sent):
        return sorted(
            (
                kind,
                target,
                re.sub(r"G\d+|《[^》]+》", "#", "".join(s["data"].get("text", "") for s in segs)),
            )
            for kind, target, segs in sent
        )

    desk.fake.clear()
    v = await visitors(COORDINATOR)
    desk.fake.clear()  # the login link
    status, page = await v.act(
        "adopt", f"/console/drafts?draft=G{second}", draft=f"G{second}", seen="submitted",
        outlet="县政务信息|full", issue=3,
    )  # fmt: skip
    assert status == 303
    notice = f"城关镇《城关镇第二篇稿件》（G{second}）被《县政务信息》全文采用，积1分。"
    assert notice in page  # the coordinator sees the group's words
    by_console = desk.fake.sent()
    chat_confirmation = ("private", COORDINATOR)
    assert masked(by_console) == [m for m in masked(by_chat) if m[:2] != chat_confirmation]
    assert ("group", GROUP) in {(k, t) for k, t, _ in by_console}
    await desk.say(OFFICER, f"/稿件 G{second}")
    assert re.search(r"采用（王科长）：县政务信息", desk.fake.texts("private", OFFICER)[-1])
    async with desk.bot.db.reader() as s:
        [event] = (
            (
                await s.execute(
                    select(DraftEvent).where(
                        DraftEvent.draft_id == second, DraftEvent.action == "adopt"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert event.actor_id is not None
    assert "已采用" in await v.page(f"/console/drafts?draft=G{second}&state=all")


async def test_every_review_button_calls_its_operation(desk, visitors):
    v = await visitors(COORDINATOR)
    g = await latest_draft(desk)
    base = {"draft": f"G{g}"}

    async def act(name, seen, **fields):
        return await v.act(name, f"/console/drafts?draft=G{g}", **base, seen=seen, **fields)

    _, page = await act("return", "submitted", reason="")
    assert "退回需写明理由，以便信息员修改。" in page
    _, page = await act("return", "submitted", reason="请补充数据")
    assert f"已退回稿件G{g}《城关镇推进人居环境整治》，理由已私信告知李明。" in page
    assert "理由：请补充数据" in desk.fake.texts("private", OFFICER)[-1]
    _, page = await act("reject", "returned", reason="重复")
    assert f"已记录稿件G{g}《城关镇推进人居环境整治》不采用。" in page
    _, page = await act("instruct", "rejected", level="city", main="1", note="很好")
    assert f"城关镇《城关镇推进人居环境整治》（G{g}）获市主要领导批示，积5分。" in page
    _, page = await act("forward", "rejected", level="province")
    assert f"已记录稿件G{g}《城关镇推进人居环境整治》报省办。" in page
    assert 'id="late"' not in page  # only an urgent draft has the 迟报 button
    _, page = await act("late", "rejected", note="晚了两小时")  # the operation refuses it too
    assert f"稿件G{g}不是紧急信息（未标注 #紧急），迟报只记录紧急信息，未记录。" in page
    _, page = await act("adopt", "rejected", outlet="政务信息快报|excerpt")
    assert "被《政务信息快报》摘编采用" in page
    _, page = await act("revoke", "adopted", outlet="政务信息快报")
    assert f"已撤销稿件G{g}在《政务信息快报》的采用记录" in page
    assert [e.action for e in await history_of(desk, g)] == [
        "submit", "return", "reject", "instruction", "forward", "adopt", "adopt_revoked",
    ]  # fmt: skip


async def history_of(h: Harness, draft_id: int) -> list[DraftEvent]:
    async with h.bot.db.reader() as s:
        q = select(DraftEvent).where(DraftEvent.draft_id == draft_id).order_by(DraftEvent.id)
        return list((await s.execute(q)).scalars())


async def test_an_action_on_a_draft_that_changed_is_refused_with_its_state(desk, visitors):
    v = await visitors(COORDINATOR)
    g = await latest_draft(desk)
    page = await v.page(f"/console/drafts?draft=G{g}")
    assert 'name="seen" value="submitted"' in page
    await desk.tell(COORDINATOR, f"/退回 G{g} 请补充数据")  # meanwhile, in the chat
    desk.fake.clear()
    status, page = await v.act(
        "adopt", f"/console/drafts?draft=G{g}", draft=f"G{g}", seen="submitted",
        outlet="县政务信息|full",
    )  # fmt: skip
    assert status == 303
    assert f"稿件G{g}在您打开页面后已有变化，当前状态为“退回修改”，本次操作未执行。" in page
    await desk.settle()
    assert desk.fake.sent() == []  # no notice went out
    assert [d.status for d in await desk.drafts()] == ["returned"]
    assert [e.action for e in await history_of(desk, g)] == ["submit", "return"]


async def test_two_coordinators_adopting_at_once(desk, visitors):
    await make_member(desk, COORDINATOR + 1, "张敏", Role.coordinator)
    first, second = await visitors(COORDINATOR), await visitors(COORDINATOR + 1)
    g = await latest_draft(desk)
    desk.fake.clear()
    fields = {"draft": f"G{g}", "seen": "submitted", "outlet": "县政务信息|full"}
    back = f"/console/drafts?draft=G{g}"
    results = await asyncio.gather(
        first.act("adopt", back, **fields), second.act("adopt", back, **fields)
    )
    pages = [page for _, page in results]
    assert sum("被《县政务信息》全文采用，积1分。" in p for p in pages) == 1
    refused = next(p for p in pages if "未重复记录" in p)
    assert f"稿件G{g}已于" in refused and "被《县政务信息》全文采用" in refused
    assert len([t for t in desk.fake.texts("group", GROUP) if "采用" in t]) == 1


async def test_html_and_script_in_names_and_titles_stay_inert(desk, visitors):
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    await desk.say(COORDINATOR, f"/添加单位 {evil[:20]}镇 乡镇")
    await desk.register(10060, "城关镇", f"<b>{evil}</b>")
    await desk.say(
        10060, f"/报送 {evil}\n<iframe src=//evil.example></iframe>", name=f"<b>{evil}</b>"
    )
    await desk.say(COORDINATOR, f"/约稿 {evil} 截止11月30日17时")
    v = await visitors(COORDINATOR)
    g = await latest_draft(desk)
    for path in (
        f"/console/drafts?draft=G{g}",
        "/console/topics",
        "/console/units",
        "/console/standings",
        "/console/quotas",
        "/console/log",
    ):
        status, raw = await v.get(path)
        assert status == 200, path
        assert "<script>alert" not in raw and "<img src=x" not in raw and "<iframe" not in raw
        assert "<b>" not in raw, path
    _, raw = await v.get(f"/console/drafts?draft=G{g}")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    _, raw = await v.get("/console/units")
    assert "&lt;b&gt;" in raw  # the member's name, shown as text


async def test_bad_parameters_and_forms_get_a_chinese_400(desk, visitors):
    v = await visitors(COORDINATOR)
    for path in ("/console/drafts?state=nonsense", "/console/drafts?draft=abc",
                 "/console/drafts?unit=-1", "/console/standings?period=decade"):  # fmt: skip
        status, text = await v.get(path)
        assert status == 400 and "页面地址中的参数有误" in html.unescape(text), path
    status, text = await v.get("/console/drafts?draft=G999")
    assert status == 403 and "未找到稿件G999" in html.unescape(text)
    status, text = await v.act("adopt", draft="G1", seen="submitted", outlet="不存在的刊物|full")
    assert status == 400 and "表单内容不完整或有误（outlet）" in text
    status, text = await v.act("publish_topic", title="约稿", deadline="明天")
    assert status == 400 and "deadline" in text
    status, page = await v.act(
        "publish_topic", "/console/topics", title="约稿", deadline="2026-11-01T10:00"
    )
    assert "已过，未发布" in page
    status, back = await v.post(
        "/console/action/return", {"csrf": v.csrf, "back": "https://evil.example/", "draft": "G1",
                                   "seen": "submitted", "reason": "x"},
    )  # fmt: skip
    assert (status, back) == (303, "/console/")


async def test_topics_quotas_units_and_export_from_the_console(desk, visitors):
    v = await visitors(COORDINATOR)
    _, page = await v.act(
        "publish_topic", "/console/topics", title="冬季安全生产", deadline="2026-11-30T17:00",
        units=["1", "2"], brief="请重点反映新举措。",
    )  # fmt: skip
    assert "约稿Y1《冬季安全生产》已发布到1个信息工作群，截止2026-11-30 17:00。" in page
    post = desk.fake.texts("group", GROUP)[-1]
    assert "冬季安全生产" in post
    _, page = await v.act("remind_topic", "/console/topics", topic="Y1")
    assert "已在信息工作群催报约稿Y1" in page
    _, page = await v.act("close_topic", "/console/topics", topic="Y1")
    assert "约稿Y1《冬季安全生产》已结束，不再提醒。" in page
    _, page = await v.act("set_quota", "/console/quotas", who="城关镇", period="month",
                          metric="submitted", amount="10")  # fmt: skip
    assert "已设定城关镇每月报送任务10条。" in page
    assert "城关镇" in page and "本月报送" in page
    # 城关镇 was added today, so it is judged from today: by Thursday 10 条 a month
    # (21 working days) expect 1.4, and it has sent 1.
    desk.clock.advance(timedelta(days=3))
    v = await visitors(COORDINATOR)  # a new login: three idle days ended the session
    _, page = await v.act("remind_quotas", "/console/quotas")
    assert "已催报1个进度落后的单位，汇总已私信协调员。" in page
    assert "城关镇" in desk.fake.texts("group", GROUP)[-1]
    _, page = await v.act(
        "add_unit", "/console/units", name="胜天镇", kind="乡镇", aliases="胜天、胜天乡"
    )
    assert "已添加单位：胜天镇（乡镇），别名：胜天、胜天乡。" in page
    _, page = await v.act("register", "/console/units", im_id="10070", name="王芳", unit="3")
    assert "已登记 王芳 为胜天镇信息员" in page
    async with desk.bot.db.reader() as s:
        member = (await s.execute(select(Member).where(Member.im_id == 10070))).scalar_one()
    _, page = await v.act("retire", "/console/units", member=member.id)
    assert "已注销 王芳 的胜天镇信息员登记，备案记录已保留。" in page
    assert "王芳（10070）" in page  # the 备案 history
    log = await v.page("/console/log")
    for words in ("发布约稿Y1《冬季安全生产》", "结束约稿Y1", "登记 王芳 为胜天镇信息员",
                  "结束 王芳 的胜天镇信息员登记", "设定城关镇每月报送任务10条"):  # fmt: skip
        assert words in log, words
    data = {"csrf": v.csrf, "back": "/console/export", "period": "本月"}
    async with v.client.post(
        desk.base + "/console/action/export", data=data, headers={"Origin": desk.base}
    ) as resp:
        assert resp.status == 200
        assert "attachment" in resp.headers["Content-Disposition"]
        body = await resp.read()
    assert body[:2] == b"PK"  # a workbook, built by /导出's code


async def test_classes_exemptions_and_retiring_a_unit_from_the_console(desk, visitors):
    """The 单位 page sets a unit's class and retires a unit; the 任务 page pauses and resumes
    reminders; the 排行 page ranks one class — each the chat command's operation."""
    v = await visitors(COORDINATOR)
    _, page = await v.act(
        "add_unit", "/console/units", name="财政局", kind="部门", klass="二类部门", aliases=""
    )
    assert "已添加单位：财政局（部门，类别：二类部门）" in html.unescape(page)
    async with desk.bot.db.reader() as s:
        units = {u.name: u for u in (await s.execute(select(Unit))).scalars()}
    assert units["财政局"].klass == "二类部门"
    _, page = await v.act("set_class", "/console/units", unit=units["经信局"].id, klass="一类部门")
    assert "已将经信局的类别设为一类部门。" in page
    _, page = await v.act("set_class", "/console/units", unit=units["经信局"].id, klass="三类")
    assert "类别“三类”不在配置的类别中" in html.unescape(page)  # the chat's refusal

    await desk.say(10030, "/报送 经信局推进企业技改\n正文")
    standings = html.unescape(await v.page("/console/standings?period=month&class=一类部门"))
    ranking = standings.split('id="ranking-title"')[1].split("</section>")[0]
    assert "<th colspan" in ranking and ">一类部门</th>" in ranking
    assert "经信局" in ranking and "城关镇" not in ranking and "财政局" not in ranking
    assert (await v.get("/console/standings?class=五类部门"))[0] == 400

    _, page = await v.act("exempt", "/console/quotas", unit=units["城关镇"].id,
                          until="2026-11-27", reason="迎检")  # fmt: skip
    assert "已暂停对城关镇的催报至2026年11月27日（迎检）" in page
    assert "城关镇：暂停至2026年11月27日（迎检）" in page
    await desk.say(COORDINATOR, "/任务")
    assert "暂停催报：城关镇" in desk.last_reply()
    status, text = await v.act("exempt", "/console/quotas", unit=units["城关镇"].id,
                               until="2026-11-31")  # fmt: skip
    assert status == 400 and "until" in text
    _, page = await v.act("end_exemption", "/console/quotas", unit=units["城关镇"].id)
    assert "已恢复对城关镇的催报。" in page
    _, page = await v.act("end_exemption", "/console/quotas", unit=units["城关镇"].id)
    assert "城关镇目前没有暂停催报" in html.unescape(page)

    _, page = await v.act("retire_unit", "/console/units", unit=units["经信局"].id)
    assert "已停用单位：经信局。" in page and "周强的登记已注销" in page
    async with desk.bot.db.reader() as s:
        retired = (await s.execute(select(Unit).where(Unit.name == "经信局"))).scalar_one()
    assert not retired.active and retired.retired_at == desk.clock.now()
    units_page = html.unescape(await v.page("/console/units"))
    assert "停用经信局" not in units_page  # no longer listed
    _, page = await v.act("retire_unit", "/console/units", unit=units["经信局"].id)
    assert "经信局已于2026-11-23停用，历史记录保留。" in html.unescape(page)
    log = await v.page("/console/log")
    for words in (
        "暂停催报城关镇至2026-11-27：迎检",
        "恢复催报城关镇",
        "结束 周强 的经信局信息员登记",
    ):
        assert words in log, words
