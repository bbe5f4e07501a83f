"""Decorator routers and the command parser.

Each workflow module in handlers/ owns a Router; bot.app includes them in
one explicit list. The roles given at registration form the permission
table, checked by the dispatcher in one place.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from storage.models import Role

from .onebot import Segment, parse_id

if TYPE_CHECKING:
    from .context import Context

Handler = Callable[["Context", "Command"], Awaitable[None]]

EVERYONE = frozenset(Role)
MEMBERS = frozenset({Role.officer, Role.leader, Role.coordinator})
OFFICERS = frozenset({Role.officer})
COORDINATORS = frozenset({Role.coordinator})

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


class Router:
    def __init__(self, name: str) -> None:
        self.name = name
        self.specs: list[CommandSpec] = []

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


class CommandTable:
    """All registered commands by every word that names them."""

    def __init__(self, routers: Iterable[Router]) -> None:
        self.specs: list[CommandSpec] = []
        self.by_word: dict[str, CommandSpec] = {}
        for router in routers:
            for spec in router.specs:
                for word in (spec.name, *spec.aliases):
                    key = word.lower()
                    if key in self.by_word:
                        raise ValueError(f"command word {word!r} registered twice")
                    self.by_word[key] = spec
                self.specs.append(spec)

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
