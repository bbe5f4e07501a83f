"""The web console at /console/: the coordinator's desk in the browser.

Mechanics only; it knows no workflow. What a page shows and what a form does
are registered on the workflows' routers (`@router.page`, `@router.action`)
and reached through the registry. Here:

* Login only through a one-time link (`/登录` in private chat): the GET shows a
  button (QQ fetches link previews, which must not spend the token), the POST
  spends it and opens a server-side session; the cookie holds the session id
  (HttpOnly, SameSite=Strict, Path=/console/, Secure when `public_url` is https).
* Every request checks the session: idle for `[web] session_idle_minutes` or a
  day old, it is over; a member who lost the role (a retired officer) loses every
  session at once. Without a session everything but the login pages and the
  static files redirects to a page saying how to log in.
* Every form that changes something carries the session's CSRF token and must
  come from the console's own origin.
* Roles are checked with `require_role`, the dispatcher's check for commands.
* An action runs in `app.acting(member)`: the same transaction, operations and
  outbox as the chat; its answer (or refusal) is shown on the page it came from.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from aiohttp import web
from yarl import URL

from storage.models import Member
from storage.queries import Repo

from .app import BotApp
from .context import Refusal
from .pages import LOGIN_VALID, SESSION_LONGEST, BadInput, Download, Fields, Form, Page, View
from .render import TEMPLATE_DIR
from .router import MEMBERS, require_role

log = logging.getLogger(__name__)

CONSOLE_KEY = web.AppKey("console", "Console")
COOKIE = "xinxibot_console"
TOUCH_EVERY = timedelta(minutes=1)  # how often a session's last-seen time is written
CONSOLE_ROLES = MEMBERS  # who may log in: coordinators, officers, leaders
STATIC_DIR = TEMPLATE_DIR / "console" / "static"
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}
# Paths of the core; a page may not take these names.
RESERVED = frozenset({"login", "logout", "static", "action"})
LOGIN_WHY = ("expired", "logout")  # why the login help is shown, besides "no session"
_HTTP_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    403: web.HTTPForbidden,
    410: web.HTTPGone,
}
SECURITY_HEADERS = {
    # Everything the pages use is served from here: no CDN, no inline script.
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def csrf_token(session_id: str) -> str:
    """The session's CSRF token: derived from the session id, which only the browser
    holding the cookie knows (nothing more to store)."""
    return hmac.new(session_id.encode(), b"xinxibot console csrf", "sha256").hexdigest()


@dataclass
class Visit:
    """The session of the request: its id (from the cookie) and its member."""

    session_id: str
    member: Member


class Console:
    def __init__(self, bot: BotApp) -> None:
        self.bot = bot
        taken = RESERVED & bot.registry.pages.keys()
        if taken:
            raise ValueError(f"console page names {sorted(taken)} are reserved")
        # The answer to the last action of each session, shown once on the next page.
        self.notes: dict[str, tuple[str, str]] = {}
        self.static = {
            path.name: (path.read_bytes(), STATIC_TYPES[path.suffix])
            for path in sorted(STATIC_DIR.iterdir())
            if path.suffix in STATIC_TYPES
        }

    def install(self, app: web.Application) -> None:
        app[CONSOLE_KEY] = self
        app.middlewares.append(self._guard)
        add_get, add_post = app.router.add_get, app.router.add_post
        add_get("/console", self.home)
        add_get("/console/", self.home)
        add_get("/console/login", self.login_help)
        add_get("/console/login/{token}", self.login_page)
        add_post("/console/login/{token}", self.login)
        add_post("/console/logout", self.logout)
        add_get("/console/static/{name}", self.static_file)
        add_post("/console/action/{name}", self.action)
        add_get("/console/{slug}", self.page)

    # ------------------------------------------------------------ answers

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Console responses: security headers, never cached (except static files), and
        a Chinese page instead of a traceback."""
        if request.path != "/console" and not request.path.startswith("/console/"):
            return await handler(request)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self._secure(request, exc)
            raise
        except Exception:
            log.exception("console request %s %s failed", request.method, request.path)
            response = self._message(500, "internal_error")
        self._secure(request, response)
        return response

    def _secure(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(SECURITY_HEADERS)
        if not request.path.startswith("/console/static/"):
            response.headers["Cache-Control"] = "no-store"

    def _html(self, template: str, status: int = 200, **context: Any) -> web.Response:
        context = {"me": None, "nav": [], "current": "", "csrf": "", "note": None} | context
        html = self.bot.renderer.page(template, **context)
        return web.Response(text=html, status=status, content_type="text/html")

    def _message(
        self, status: int, problem: str, visit: Visit | None = None, **context: Any
    ) -> web.Response:
        """A page that says one thing: how to log in, a refusal, a bad request."""
        if visit is not None:
            context |= self._layout(visit, "")
        return self._html("console/message.html.j2", status, problem=problem, **context)

    def _stop(
        self, status: int, problem: str, visit: Visit | None = None, **context: Any
    ) -> web.HTTPException:
        """The message page as an exception, to end a request from a helper."""
        page = self._message(status, problem, visit, **context)
        return _HTTP_ERRORS[status](text=page.text, content_type="text/html")

    def _to_login(self, why: str | None = None) -> web.HTTPSeeOther:
        return web.HTTPSeeOther("/console/login" + (f"?why={why}" if why else ""))

    def _layout(self, visit: Visit, current: str) -> dict[str, Any]:
        return {
            "me": visit.member,
            "nav": self._nav(visit.member),
            "current": current,
            "csrf": csrf_token(visit.session_id),
            "note": self.notes.pop(visit.session_id, None),
        }

    def _nav(self, member: Member) -> list[tuple[str, str]]:
        """(slug, title) of the pages the member may open, in the order of labels.toml [PAGE]."""
        pages = self.bot.registry.pages
        return [
            (slug, title)
            for slug, title in self.bot.renderer.labels["PAGE"].items()
            if slug in pages and member.role in pages[slug].roles
        ]

    def _refusal_text(self, exc: Refusal) -> str:
        return exc.text or self.bot.renderer.text(exc.template, **exc.context)

    # ------------------------------------------------------------ sessions

    async def _visit(self, request: web.Request) -> Visit:
        """The member logged in with this request's cookie, or a redirect to the login help."""
        session_id = request.cookies.get(COOKIE, "")
        if not session_id:
            raise self._to_login()
        bot, now = self.bot, self.bot.clock.now()
        async with bot.db.reader() as s:
            found = await Repo(s).console.session(session_id)
        if found is None:
            raise self._to_login()
        row, member = found
        idle = timedelta(minutes=bot.config.web.session_idle_minutes)
        if now - row.last_seen_at >= idle or now - row.created_at >= SESSION_LONGEST:
            async with bot.db.transaction() as s:
                await Repo(s).console.end_session(session_id)
            self.notes.pop(session_id, None)
            raise self._to_login("expired")
        if member.role not in CONSOLE_ROLES:  # retired or demoted: every session ends now
            async with bot.db.transaction() as s:
                await Repo(s).console.end_sessions(member.id)
            log.info("console: %s lost the role; sessions ended", member.im_id)
            raise self._to_login()
        if now - row.last_seen_at >= TOUCH_EVERY:
            async with bot.db.transaction() as s:
                await Repo(s).console.touch(session_id, now)
        return Visit(session_id, member)

    async def open_session(self, member: Member) -> str:
        """A new session for `member` (the login link, the demo's button)."""
        async with self.bot.db.transaction() as s:
            return Repo(s).console.open_session(member.id, self.bot.clock.now())

    def set_cookie(self, response: web.StreamResponse, session_id: str) -> None:
        response.set_cookie(
            COOKIE,
            session_id,
            path="/console/",
            httponly=True,
            samesite="Strict",
            secure=self.bot.config.public_url.startswith("https://"),
        )

    def _check_origin(self, request: web.Request) -> None:
        """A change must come from a page of the console: its Origin is the public address
        or the address the browser used. A missing or foreign Origin is refused."""
        origin = request.headers.get("Origin", "").lower()
        own = {
            str(URL(self.bot.config.public_url).origin()).lower(),
            f"{request.scheme}://{request.host}".lower(),
        }
        if origin not in own:
            log.warning("console: %s from origin %r refused", request.path, origin or None)
            raise self._stop(403, "bad_origin")

    async def _form(self, request: web.Request) -> Form:
        if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            raise self._stop(400, "bad_form", field="")
        values: dict[str, list[str]] = {}
        for name, value in (await request.post()).items():
            if not isinstance(value, str):  # an uploaded file: no console form sends one
                raise self._stop(400, "bad_form", field=name)
            values.setdefault(name, []).append(value)
        return Form(values)

    def _check_csrf(self, form: Form, visit: Visit) -> None:
        if not hmac.compare_digest(form.get("csrf"), csrf_token(visit.session_id)):
            log.warning("console: a form without the session's CSRF token refused")
            raise self._stop(403, "bad_csrf")

    # ------------------------------------------------------------ login and logout

    async def login_help(self, request: web.Request) -> web.Response:
        why = request.query.get("why")
        return self._message(200, why if why in LOGIN_WHY else "login_required")

    async def login_page(self, request: web.Request) -> web.Response:
        """The link from /登录: a button that logs in. A GET never spends the token (QQ
        fetches a preview of every link)."""
        async with self.bot.db.reader() as s:
            login = await Repo(s).console.login(request.match_info["token"], self.bot.clock.now())
        if login is None:
            return self._message(410, "login_invalid", minutes=LOGIN_VALID.seconds // 60)
        return self._html("console/login.html.j2")

    async def login(self, request: web.Request) -> web.StreamResponse:
        self._check_origin(request)
        now = self.bot.clock.now()
        async with self.bot.db.transaction() as s:
            repo = Repo(s)
            member_id = await repo.console.use_login(request.match_info["token"], now)
            member = await repo.members.get(member_id) if member_id is not None else None
            if member is None or member.role not in CONSOLE_ROLES:
                raise self._stop(410, "login_invalid", minutes=LOGIN_VALID.seconds // 60)
            session_id = repo.console.open_session(member.id, now)
        log.info("console: %s logged in", member.im_id)
        response = web.HTTPSeeOther("/console/")
        self.set_cookie(response, session_id)
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        """The page's 退出 button: this session ends (/退出登录 in chat ends them all)."""
        visit = await self._visit(request)
        self._check_origin(request)
        self._check_csrf(await self._form(request), visit)
        async with self.bot.db.transaction() as s:
            await Repo(s).console.end_session(visit.session_id)
        self.notes.pop(visit.session_id, None)
        response = self._to_login("logout")
        response.del_cookie(COOKIE, path="/console/")
        raise response

    # ------------------------------------------------------------ pages and actions

    async def home(self, request: web.Request) -> web.StreamResponse:
        visit = await self._visit(request)
        nav = self._nav(visit.member)
        if not nav:
            return self._message(403, "no_pages", visit)
        raise web.HTTPSeeOther(f"/console/{nav[0][0]}")

    async def page(self, request: web.Request) -> web.StreamResponse:
        visit = await self._visit(request)
        spec = self.bot.registry.pages.get(request.match_info["slug"])
        if spec is None:
            return self._message(404, "not_found", visit)
        title = self.bot.renderer.labels["PAGE"][spec.slug]
        try:
            require_role(visit.member.role, spec.roles, page=title)
            async with self.bot.db.reader() as s:
                query = Fields({k: request.query.getall(k) for k in request.query})
                view = View(self.bot, Repo(s), visit.member, query, request.path_qs)
                page: Page = await spec.handler(view)
                context = self._layout(visit, spec.slug) | {"title": title, "here": view.path}
                return self._html(page.template, **page.context, **context)
        except Refusal as exc:
            return self._message(403, "refused", visit, text=self._refusal_text(exc))
        except BadInput as exc:
            log.warning("console: page %s with a bad parameter %r", spec.slug, exc.name)
            return self._message(400, "bad_query", visit, field=exc.name)

    async def action(self, request: web.Request) -> web.StreamResponse:
        visit = await self._visit(request)
        self._check_origin(request)
        form = await self._form(request)
        self._check_csrf(form, visit)
        spec = self.bot.registry.actions.get(request.match_info["name"])
        if spec is None:
            return self._message(404, "not_found", visit)
        back = _back(form.get("back"))
        try:
            require_role(visit.member.role, spec.roles, page="")
        except Refusal as exc:
            log.warning("console: %s may not %s", visit.member.im_id, spec.name)
            return self._message(403, "refused", visit, text=self._refusal_text(exc))
        try:
            async with self.bot.acting(visit.member) as ctx:
                answer = await spec.handler(ctx, form)
        except Refusal as exc:
            self.notes[visit.session_id] = ("refused", self._refusal_text(exc))
            raise web.HTTPSeeOther(back) from None
        except BadInput as exc:
            log.warning("console: action %s with a bad field %r", spec.name, exc.name)
            return self._message(400, "bad_form", visit, field=exc.name)
        if isinstance(answer, Download):
            log.info("console: %s downloaded %s", visit.member.im_id, answer.name)
            return web.FileResponse(
                answer.path,
                headers={
                    "Content-Disposition": f"attachment; filename*=UTF-8''{quote(answer.name)}",
                    "Content-Type": "application/octet-stream",
                },
            )
        log.info("console: %s did %s", visit.member.im_id, spec.name)
        self.notes[visit.session_id] = ("done", answer)
        raise web.HTTPSeeOther(back)

    async def static_file(self, request: web.Request) -> web.Response:
        entry = self.static.get(request.match_info["name"])
        if entry is None:
            raise web.HTTPNotFound()
        body, content_type = entry
        return web.Response(
            body=body, content_type=content_type, headers={"Cache-Control": "max-age=300"}
        )


def _back(value: str) -> str:
    """Where an action's answer is shown: the console page the form came from (never
    another site: only a path under /console/)."""
    try:
        url = URL(value)
    except ValueError:
        return "/console/"
    if url.is_absolute() or not url.path.startswith("/console/") or "//" in value or "\\" in value:
        return "/console/"
    return str(url)
