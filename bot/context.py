"""What a handler gets: the store for this event's transaction, the clock,
the renderer, and functions that queue replies and posts in the outbox.

Nothing is sent from here: messages are outbox rows committed with the
event's effects, and the sender delivers them after the commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from storage.models import Member, Role
from storage.queries import Repo

from .onebot import Event, at_segment, text_segment
from .sender import LOW

if TYPE_CHECKING:
    from .app import BotApp


class Refusal(Exception):
    """Raised by a handler to answer with a template and change nothing.

    The dispatcher rolls the transaction back, then queues the reply alone.
    """

    def __init__(self, template: str, /, **context: Any) -> None:
        super().__init__(template)
        self.template = template
        self.context = context


@dataclass
class Context:
    app: BotApp
    repo: Repo
    event: Event
    member: Member | None
    # Run after the commit (e.g. start a download, remember a collecting chat).
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    # Replies are courtesy answers (help, refusals, anything a stranger gets): the
    # sender puts them after receipts and may drop them in a flood.
    low_priority: bool = False

    @property
    def role(self) -> Role:
        return self.member.role if self.member is not None else Role.stranger

    @property
    def now(self) -> datetime:
        return self.app.clock.now()

    @property
    def in_group(self) -> bool:
        return self.event.chat_type == "group"

    def render(self, template: str, /, **context: Any) -> str:
        return self.app.renderer.text(template, **context)

    # ------------------------------------------------------------ outgoing

    def reply(self, template: str, /, **context: Any) -> None:
        """Answer in the chat the event came from (in a group, @-mentioning the sender)."""
        self.reply_text(self.render(template, **context))

    def reply_text(self, text: str) -> None:
        # Group answers each start with their @-mention, so when several wait
        # (a deadline rush) they go out merged into one message.
        priority = LOW if self.low_priority else 0
        if self.in_group:
            self.post(
                self.event.group_id,
                text,
                mention=[self.event.user_id],
                mergeable=True,
                priority=priority,
            )
        else:
            self.tell(self.event.user_id, text, priority=priority)

    def reply_private(self, template: str, /, **context: Any) -> None:
        """Long content goes to the sender's private chat."""
        self.tell(
            self.event.user_id,
            self.render(template, **context),
            priority=LOW if self.low_priority else 0,
        )

    def post(
        self,
        group_id: int,
        text: str,
        mention: Iterable[int] = (),
        mergeable: bool = False,
        priority: int = 0,
    ) -> None:
        self.app.queue(
            self.repo,
            "group",
            group_id,
            text,
            mention=mention,
            mergeable=mergeable,
            self_id=self.event.self_id,
            priority=priority,
        )

    def tell(self, im_id: int, text: str, priority: int = 0) -> None:
        self.app.queue(
            self.repo, "private", im_id, text, self_id=self.event.self_id, priority=priority
        )

    async def tell_coordinators(self, template: str, /, **context: Any) -> None:
        text = self.render(template, **context)
        for c in await self.repo.members.coordinators():
            self.tell(c.im_id, text)


def message_segments(text: str, mention: Iterable[int] = ()) -> list[dict]:
    """Segments of an outgoing message: `at` segments from ids, then the text."""
    segs = [at_segment(uid) for uid in dict.fromkeys(mention)]
    if segs:
        text = " " + text
    segs.append(text_segment(text))
    return segs
