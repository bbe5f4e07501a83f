"""What a handler or an operation gets: the store for this transaction, the
actor, the clock, the renderer, and functions that queue posts and private
notices in the outbox.

A Context comes from a chat event (the dispatcher) or from `BotApp.acting`
(a scheduled job, the console): `event` is None outside the chat door, and
only the chat door answers with `reply`. Nothing is sent from here: messages
are outbox rows committed with the transaction's effects, and the sender
delivers them after the commit.
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


ConversationKey = tuple[str, int, int]  # (chat type, chat id, person's IM id)


class Refusal(Exception):
    """Raised by a handler or an operation to answer with a template and change nothing.

    The transaction is rolled back; `text` is the rendered answer (set when the
    refusal leaves its transaction): the chat door replies with it alone, the
    console shows it.
    """

    def __init__(self, template: str, /, **context: Any) -> None:
        super().__init__(template)
        self.template = template
        self.context = context
        self.text: str | None = None


@dataclass
class Context:
    app: BotApp
    repo: Repo
    event: Event | None  # None outside the chat door (a scheduled job, the console)
    member: Member | None  # the actor; None for the bot itself (a scheduled job) or a stranger
    # Run after the commit (e.g. start a download, remember an open conversation).
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
        return self.event is not None and self.event.chat_type == "group"

    @property
    def chat_group(self) -> int | None:
        """The group the event came from; None in private chat and outside a chat."""
        return self.event.group_id if self.in_group else None

    @property
    def origin_groups(self) -> list[int]:
        """Where a notice to the group goes: the group the command came from, or every
        configured group (from private chat and outside a chat)."""
        return [self.chat_group] if self.in_group else sorted(self.app.groups)

    @property
    def self_id(self) -> int | None:
        """The bot account that sends: the one the event came to, else the last one seen."""
        return self.event.self_id if self.event is not None else self.app.self_id

    # ------------------------------------------------------------ conversations

    @property
    def conversation_key(self) -> ConversationKey:
        event = self._chat_event()
        return (event.chat_type, event.chat_id, event.user_id)

    def open_conversation(self, router: str) -> None:
        """After the commit, this person's next non-command messages in this chat go to
        `router`'s conversation handler (until `close_conversation`)."""
        key, conversations = self.conversation_key, self.app.conversations
        self.after_commit.append(lambda: conversations.__setitem__(key, router))

    def close_conversation(self) -> None:
        key, conversations = self.conversation_key, self.app.conversations
        self.after_commit.append(lambda: conversations.pop(key, None))

    def _chat_event(self) -> Event:
        if self.event is None:
            raise RuntimeError("only the chat door answers the asker or holds a conversation")
        return self.event

    def render(self, template: str, /, **context: Any) -> str:
        return self.app.renderer.text(template, **context)

    # ------------------------------------------------------------ outgoing

    def reply(self, template: str, /, **context: Any) -> None:
        """Answer in the chat the event came from (in a group, @-mentioning the sender).
        The chat door's own: operations queue notices, never replies."""
        self.reply_text(self.render(template, **context))

    def reply_text(self, text: str) -> None:
        # Group answers each start with their @-mention, so when several wait
        # (a deadline rush) they go out merged into one message.
        event = self._chat_event()
        priority = LOW if self.low_priority else 0
        if self.in_group:
            self.post(
                event.group_id, text, mention=[event.user_id], mergeable=True, priority=priority
            )
        else:
            self.tell(event.user_id, text, priority=priority)

    def reply_private(self, template: str, /, **context: Any) -> None:
        """Long content goes to the sender's private chat."""
        self.tell(
            self._chat_event().user_id,
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
            self_id=self.self_id,
            priority=priority,
        )

    def tell(self, im_id: int, text: str, priority: int = 0) -> None:
        self.app.queue(self.repo, "private", im_id, text, self_id=self.self_id, priority=priority)

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
