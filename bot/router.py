"""Decorator routers, the registry built from them, and the command parser.

Each workflow module in handlers/ owns a Router and registers on it
everything it handles: commands, uploaded files, the continuation of a
multi-step conversation, start-up hooks, ticks, scheduled jobs, and its
pages and actions in the web console. The one explicit list of routers
(handlers.ROUTERS) is given to BotApp, which builds a Registry from it: the
core reaches every workflow through the registry and imports none. The roles
given at registration form the permission table, checked by `require_role`
for a command (the dispatcher) and a console page or action (bot/console.py).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from storage.models import Role

from .context import Refusal
from .onebot import Event, Segment, parse_id

if TYPE_CHECKING:
    from .app import BotApp
    from .context import Context
    from .pages import Download, Form, Page, View

Handler = Callable[["Context", "Command"], Awaitable[None]]
EventHandler = Callable[["Context", Event], Awaitable[None]]  # a file, a conversation's message
StartupHook = Callable[["BotApp"], Awaitable[None]]
TickHook = Callable[["BotApp", datetime], Awaitable[None]]
Job = Callable[..., Awaitable[None]]  # async def job(app, *args: int | str)
PageHandler = Callable[["View"], Awaitable["Page"]]
# What an action answers: the words shown to the one who acted, or a file to download.
ActionHandler = Callable[["Context", "Form"], Awaitable["str | Download"]]

EVERYONE = frozenset(Role)
MEMBERS = frozenset({Role.officer, Role.leader, Role.coordinator})
OFFICERS = frozenset({Role.officer})
COORDINATORS = frozenset({Role.coordinator})
LEADERS = frozenset({Role.leader})

_SLUG = re.compile(r"^[a-z][a-z0-9_]{0,31}$")  # a page or action name, as it appears in URLs


def require_role(role: Role, roles: frozenset[Role], **subject: str) -> None:
    """The one role check: for a chat command (`command=` its name, the dispatcher) and
    for a console page or action (`page=` its title, "" for an action; bot/console.py).
    A Refusal that says who may, or how to register."""
    if role in roles:
        return
    stranger = role in (Role.stranger, Role.none)
    template = "not_registered.txt.j2" if stranger else "no_permission.txt.j2"
    raise Refusal(template, roles=sorted(r.value for r in roles), **subject)


# Full-width forms Chinese IMEs type, as their ASCII equivalents.
_FULLWIDTH = str.maketrans({"／": "/", "＃": "#", "　": " ", "：": ":", "，": ","})
# Only in the command head line: the title keeps its own punctuation.
_HEAD_ONLY = str.maketrans({"／": "/", "＃": "#", "　": " "})


def normalize(text: str) -> str:
    """Full-width syntax characters as ASCII (for arguments, not stored titles)."""
    return text.translate(_FULLWIDTH)


@dataclass(frozen=True)
class CommandSpec:
    name: str
    aliases: tuple[str, ...]
    roles: frozenset[Role]
    handler: Handler
    private_ok: bool = True  # may be used in private chat
    low_priority: bool = False  # its answers are courtesy (help): they go after receipts


@dataclass
class Command:
    """A parsed command: the handler gets this, never the raw event text."""

    spec: CommandSpec | None  # None: an unknown command word
    word: str
    head: str = ""  # rest of the first line, full-width spaces/slashes normalised
    body: str = ""  # the lines after the first, verbatim
    mentions: list[int] = field(default_factory=list)
    mention_names: dict[int, str] = field(
        default_factory=dict
    )  # as the client sent them, if it did
    tags: list[str] = field(default_factory=list)  # "#调研" -> "调研"
    words: list[str] = field(default_factory=list)  # head tokens that are not tags

    @property
    def rest(self) -> str:
        """The head without its tags: a title, a reason, a unit name."""
        return " ".join(self.words)


@dataclass(frozen=True)
class FileSpec:
    roles: frozenset[Role]  # files from anyone else are ignored silently
    handler: EventHandler


@dataclass(frozen=True)
class PageSpec:
    """A console page: `/console/<slug>`, its title from labels.toml [PAGE]."""

    slug: str
    roles: frozenset[Role]
    handler: PageHandler


@dataclass(frozen=True)
class ActionSpec:
    """A console action: a form posted to `/console/action/<name>`, run in one transaction
    as the logged-in member (`app.acting`)."""

    name: str
    roles: frozenset[Role]
    handler: ActionHandler


def _slug(name: str) -> str:
    if not _SLUG.match(name):
        raise ValueError(f"{name!r} is not a page or action name (lower-case ASCII)")
    return name


def job_key(job: Job) -> str:
    """The target a scheduled job is stored under: "module:function". Stored in the
    job table of deployed databases, so a job function keeps its module and name."""
    return f"{job.__module__}:{job.__name__}"


class Router:
    def __init__(self, name: str) -> None:
        self.name = name
        self.specs: list[CommandSpec] = []
        self.files: list[FileSpec] = []
        self.conversations: list[EventHandler] = []
        self.startup: list[StartupHook] = []
        self.ticks: list[TickHook] = []
        self.jobs: list[Job] = []
        self.pages: list[PageSpec] = []
        self.actions: list[ActionSpec] = []

    def command(
        self,
        name: str,
        *,
        aliases: Iterable[str] = (),
        roles: frozenset[Role],
        private_ok: bool = True,
        low_priority: bool = False,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.specs.append(
                CommandSpec(name, tuple(aliases), roles, handler, private_ok, low_priority)
            )
            return handler

        return register

    def file(self, *, roles: frozenset[Role]) -> Callable[[EventHandler], EventHandler]:
        """`handler(ctx, event)` for an uploaded file (a group_upload notice or a message
        with a file segment), run in the event's transaction for people with `roles`."""

        def register(handler: EventHandler) -> EventHandler:
            self.files.append(FileSpec(roles, handler))
            return handler

        return register

    def conversation(self, handler: EventHandler) -> EventHandler:
        """`handler(ctx, event)` for a message that is not a command from someone whose
        conversation this router opened (`ctx.open_conversation`)."""
        self.conversations.append(handler)
        return handler

    def on_startup(self, hook: StartupHook) -> StartupHook:
        """`hook(app)`, run by BotApp.start() after migrations, before the sender starts."""
        self.startup.append(hook)
        return hook

    def on_tick(self, hook: TickHook) -> TickHook:
        """`hook(app, now)`, run by BotApp.tick() (every 30 s; tests call it after moving the clock)."""
        self.ticks.append(hook)
        return hook

    def job(self, job: Job) -> Job:
        """A scheduled-job target `job(app, *args)`, stored under `job_key(job)`."""
        self.jobs.append(job)
        return job

    def page(self, slug: str, *, roles: frozenset[Role]) -> Callable[[PageHandler], PageHandler]:
        """`handler(view) -> Page`: the console page `/console/<slug>` for people with `roles`."""

        def register(handler: PageHandler) -> PageHandler:
            self.pages.append(PageSpec(_slug(slug), roles, handler))
            return handler

        return register

    def action(
        self, name: str, *, roles: frozenset[Role]
    ) -> Callable[[ActionHandler], ActionHandler]:
        """`handler(ctx, form) -> str | Download`: a console form's action for people with
        `roles`; it parses the form and calls the same operation as the chat command."""

        def register(handler: ActionHandler) -> ActionHandler:
            self.actions.append(ActionSpec(_slug(name), roles, handler))
            return handler

        return register


class Registry:
    """Everything the routers handle, built once from the explicit list of routers:
    commands by every word that names them, the file handler, conversation handlers
    by router name, start-up hooks, ticks, scheduled jobs by target key, and the
    console's pages by slug and actions by name."""

    def __init__(self, routers: Iterable[Router]) -> None:
        self.specs: list[CommandSpec] = []
        self.by_word: dict[str, CommandSpec] = {}
        self.file: FileSpec | None = None
        self.conversations: dict[str, EventHandler] = {}
        self.startup: list[StartupHook] = []
        self.ticks: list[TickHook] = []
        self.jobs: dict[str, Job] = {}
        self.pages: dict[str, PageSpec] = {}
        self.actions: dict[str, ActionSpec] = {}
        names: set[str] = set()
        for router in routers:
            if router.name in names:
                raise ValueError(f"router {router.name!r} included twice")
            names.add(router.name)
            for spec in router.specs:
                for word in (spec.name, *spec.aliases):
                    key = word.lower()
                    if key in self.by_word:
                        raise ValueError(f"command word {word!r} registered twice")
                    self.by_word[key] = spec
                self.specs.append(spec)
            for file_spec in router.files:
                if self.file is not None:
                    raise ValueError(f"a second file handler in router {router.name!r}")
                self.file = file_spec
            if len(router.conversations) > 1:
                raise ValueError(f"router {router.name!r} has two conversation handlers")
            for handler in router.conversations:
                self.conversations[router.name] = handler
            self.startup.extend(router.startup)
            self.ticks.extend(router.ticks)
            for job in router.jobs:
                key = job_key(job)
                if key in self.jobs:
                    raise ValueError(f"job {key!r} registered twice")
                self.jobs[key] = job
            for page in router.pages:
                if page.slug in self.pages:
                    raise ValueError(f"console page {page.slug!r} registered twice")
                self.pages[page.slug] = page
            for action in router.actions:
                if action.name in self.actions:
                    raise ValueError(f"console action {action.name!r} registered twice")
                self.actions[action.name] = action

    def lookup(self, word: str) -> CommandSpec | None:
        return self.by_word.get(word.lower())

    def nearest(self, word: str, role: Role | None = None) -> str | None:
        """The command name closest to a mistyped word, preferring what `role` may use
        and names that start like the word."""
        specs = self.permitted(role) if role is not None else self.specs
        best, best_score = None, 0.0
        for spec in specs or self.specs:
            for candidate in (spec.name, *spec.aliases):
                score = difflib.SequenceMatcher(None, word.lower(), candidate.lower()).ratio()
                if candidate[:1] == word[:1]:
                    score += 0.2
                if score > best_score:
                    best, best_score = spec.name, score
        return best if best_score >= 0.4 else None

    def permitted(self, role: Role) -> list[CommandSpec]:
        return [s for s in self.specs if role in s.roles]

    def parse(self, segments: list[Segment], self_id: int) -> Command | None:
        """A command when the text starts with / or # (or their full-width forms),
        or @-mentions the bot and then names a command. None: ordinary chat."""
        text, mentions, names, at_bot = _flatten(segments, self_id)
        text = text.lstrip()
        head, _, body = text.partition("\n")
        head = head.translate(_HEAD_ONLY).strip()
        prefixed = head[:1] in ("/", "#")
        if not prefixed and not at_bot:
            return None
        word, _, rest = (head[1:] if prefixed else head).partition(" ")
        if head[:1] == "/" and word == "" and rest:  # "/ 报送": a space after the slash
            word, _, rest = rest.strip().partition(" ")
        spec = self.lookup(word)
        if spec is None and (head[:1] == "#" or (not prefixed and not word)):
            return None  # "#话题" chatter, or a bare @bot
        tokens = rest.split()
        tags = [normalize(t)[1:] for t in tokens if normalize(t).startswith("#") and len(t) > 1]
        words = [t for t in tokens if not normalize(t).startswith("#")]
        return Command(spec, word, rest.strip(), body.strip("\n"), mentions, names, tags, words)


def _flatten(segments: list[Segment], self_id: int) -> tuple[str, list[int], dict[int, str], bool]:
    """Text of the message, the users it @-mentions (with names where the
    client gives them, as NapCat does), and whether it starts with @bot."""
    parts: list[str] = []
    mentions: list[int] = []
    names: dict[int, str] = {}
    at_bot = False
    for seg in segments:
        if seg.type == "text":
            parts.append(str(seg.data.get("text", "")))
        elif seg.type == "at":
            qq = parse_id(seg.data.get("qq"))  # None for "all" (@全体成员) and anything odd
            if qq is not None and qq == self_id and not "".join(parts).strip():
                at_bot = True
            elif qq is not None:
                mentions.append(qq)
                name = seg.data.get("name")
                if isinstance(name, str) and name.strip():
                    names[qq] = name.strip().lstrip("@")
            parts.append(" ")
        # other segment types (image, face, reply, unknown) carry no command text
    return "".join(parts), mentions, names, at_bot
