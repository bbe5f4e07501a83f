"""The console door's own: /登录 and /退出登录 in chat, and the 操作记录 page.

The web mechanics (links, sessions, CSRF, the layout) are the core's
(bot/console.py); each workflow registers its own pages and actions."""

from __future__ import annotations

from bot.context import Context, Refusal
from bot.pages import LOGIN_VALID, Page, View
from bot.router import COORDINATORS, MEMBERS, Command, Router

router = Router("console")

LOG_PAGE = 100  # entries of 操作记录 per page


@router.command("登录", aliases=("login",), roles=MEMBERS)
async def login_command(ctx: Context, cmd: Command) -> None:
    """A one-time link to the console, in private chat only (a group would see it)."""
    if ctx.in_group:
        raise Refusal("login_private_only.txt.j2")
    token = ctx.repo.console.issue_login(ctx.member, ctx.now, LOGIN_VALID)
    ctx.reply(
        "login_link.txt.j2",
        url=f"{ctx.app.config.public_url}/console/login/{token}",
        minutes=LOGIN_VALID.seconds // 60,
    )


@router.command("退出登录", aliases=("logout",), roles=MEMBERS)
async def logout_command(ctx: Context, cmd: Command) -> None:
    """Every console session of the asker ends (a lost phone, a shared computer)."""
    ended = await ctx.repo.console.end_sessions(ctx.member.id)
    ctx.reply("logout_done.txt.j2", ended=ended)


@router.page("log", roles=COORDINATORS)
async def log_page(view: View) -> Page:
    """操作记录: who did what, when, newest first."""
    offset = view.query.number("offset", 0)
    entries = await view.repo.audit.entries(LOG_PAGE + 1, offset)
    return Page(
        "console/log.html.j2",
        {"entries": entries[:LOG_PAGE], "offset": offset, "more": len(entries) > LOG_PAGE,
         "size": LOG_PAGE},
    )  # fmt: skip
