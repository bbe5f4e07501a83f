"""What a workflow's console page or action gets and gives back.

No web details here (handlers never see aiohttp): bot/console.py turns a
request into a `View` (a page) or a `Form` (an action), checks the session,
the CSRF token and the role first, and turns the `Page`, the answer text or
the `Download` into a response. A page reads in its own session; an action
runs in `app.acting(member)`, the transaction every door uses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.models import Member, Role
from storage.queries import Repo

if TYPE_CHECKING:
    from .app import BotApp

LOGIN_VALID = timedelta(minutes=10)  # a /登录 link
SESSION_LONGEST = timedelta(days=1)  # a console session ends a day after the login, however busy

_NUMBER = re.compile(r"^[0-9]{1,12}$")


class BadInput(Exception):
    """A form field or query parameter no page of ours sends (a forged or hand-edited
    request): answered with HTTP 400 and a Chinese page naming the field."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class Fields:
    """Strings by name (a query string or a posted form), with checked accessors."""

    def __init__(self, values: Mapping[str, list[str]]) -> None:
        self._values = values

    def get(self, name: str, default: str = "") -> str:
        """The field's first value, stripped; `default` when absent."""
        values = self._values.get(name)
        return values[0].strip() if values else default

    def all(self, name: str) -> list[str]:
        """Every value of a repeated field (checkboxes)."""
        return [v.strip() for v in self._values.get(name, [])]

    def required(self, name: str) -> str:
        value = self.get(name)
        if not value:
            raise BadInput(name)
        return value

    def choice(self, name: str, allowed: Iterable[str], default: str) -> str:
        value = self.get(name, default) or default
        if value not in allowed:
            raise BadInput(name)
        return value

    def number(self, name: str, default: int | None = None) -> int | None:
        """A non-negative integer; `default` when absent or empty."""
        value = self.get(name)
        if not value:
            return default
        if not _NUMBER.match(value):
            raise BadInput(name)
        return int(value)


class Form(Fields):
    """The fields of a posted console form."""


@dataclass
class View:
    """A console page request: the logged-in member (role already checked), the query
    string and a read session."""

    app: BotApp
    repo: Repo
    member: Member
    query: Fields
    path: str  # this page's path and query: forms send it back, the answer returns here

    @property
    def role(self) -> Role:
        return self.member.role

    @property
    def now(self) -> datetime:
        return self.app.clock.now()


@dataclass
class Page:
    """A template under templates/console/ and what it shows; the core adds the layout's
    own context (the member, the navigation, the CSRF token, the last answer)."""

    template: str
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Download:
    """A file an action answers with (the workbook of 导出)."""

    path: Path
    name: str
