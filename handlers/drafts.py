"""Drafts: /报送 (inline or collected until /完成), /撤回, /我的稿件, /稿件.

Operations (submit_draft, withdraw, the collection) hold the rules; the chat
commands parse words, call them and answer the asker."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.context import Context, Refusal
from bot.onebot import Event
from bot.router import MEMBERS, OFFICERS, Command, Router, normalize
from storage.models import CATEGORIES, CollectSession, Draft, DraftStatus, Role, new_row
from storage.queries import Repo, char_count, content_hash

from .common import draft_arg, require_own_unit

if TYPE_CHECKING:
    from bot.app import BotApp

router = Router("drafts")

MAX_TITLE_CHARS = 80
BODY_PAGE = 2800  # characters of a body shown by one /稿件 (at most two chat messages)
_PAGE = re.compile(r"^[0-9]{1,6}$")
_TOPIC_TAG = re.compile(r"^(?:[Yy]|约稿)(\d{1,9})$")
_REVISION_TAG = re.compile(r"^(?:[Gg]|修改|改)(\d{1,12})$")


@dataclass
class Tags:
    category: str = "动态"
    urgent: bool = False
    topic_ref: str | None = None
    revision_of: int | None = None  # #G12: a revision of returned draft G12
    stated: bool = False  # a category, #紧急 or a topic was given (a revision inherits if not)

    def inherit(self, original: Draft) -> None:
        """A revision that states no tags of its own keeps those of the draft it revises."""
        if not self.stated:
            self.category, self.urgent = original.category, original.urgent
            self.topic_ref = original.topic_ref


def parse_tags(tags: list[str]) -> Tags:
    """#调研 #紧急 #Y12 / #约稿12 into a category, the urgent flag and a topic."""
    out = Tags()
    categories = []
    for tag in tags:
        m = _TOPIC_TAG.match(tag)
        r = _REVISION_TAG.match(tag)
        if m:
            out.topic_ref = f"Y{int(m.group(1))}"
        elif r:
            out.revision_of = int(r.group(1))
        elif tag == "紧急":
            out.urgent = True
        elif tag in CATEGORIES:
            categories.append(tag)
        else:
            raise Refusal("submit_bad_tag.txt.j2", tag=tag, categories=CATEGORIES)
    out.stated = bool(categories) or out.urgent or out.topic_ref is not None
    out.category = categories[0] if categories else ("紧急" if out.urgent else "动态")
    return out


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def check_flood(ctx: Context) -> None:
    """Before work that takes a while (collecting a long draft, downloading a file): the
    actor has not reached the hourly limit. `submit_draft` checks it again when storing."""
    since = ctx.now - timedelta(hours=1)
    refuse_flood(ctx, await ctx.repo.drafts.count_by_member_since(ctx.member.id, since))


def refuse_flood(ctx: Context, recent: int) -> None:
    limit = ctx.app.config.limits.drafts_per_hour
    if recent >= limit:
        raise Refusal("submit_flood.txt.j2", limit=limit)


def check_title(title: str) -> None:
    if not title:
        raise Refusal("submit_no_title.txt.j2")
    if len(title) > MAX_TITLE_CHARS:
        raise Refusal("submit_title_too_long.txt.j2", length=len(title), limit=MAX_TITLE_CHARS)


@dataclass(frozen=True)
class Attachment:
    """The uploaded file a draft was read from (or that it keeps as it is)."""

    name: str
    path: str
    size: int
    content_hash: str  # of the file's bytes: the same file twice is a duplicate
    char_count: int | None  # of the text read from it; None: kept as it is (.doc, .wps, .pdf)


@dataclass(frozen=True)
class Receipt:
    """What the submitter is told: the draft's number and its piece's rank in the unit's
    month of first submission (a revision keeps the rank of the piece it revises)."""

    draft: Draft
    unit: str
    nth: int
    topic_note: str | None  # "closed" / "unknown": the topic it answers cannot take it


# ------------------------------------------------------------------ operations


async def submit_draft(
    ctx: Context,
    title: str,
    body: str,
    tags: Tags,
    source: str,
    attachment: Attachment | None = None,
) -> Receipt:
    """The actor (an officer) submits a draft for their unit. An exact duplicate of the
    unit's is refused; a revision of a returned draft (#G12, or the same title) is linked
    to it. Returns the receipt, which the door shows the submitter."""
    check_title(title)
    draft = new_row(
        Draft,
        unit_id=ctx.member.unit_id,
        submitter_id=ctx.member.id,
        title=title,
        body=body,
        char_count=char_count(body) if attachment is None else attachment.char_count,
        category=tags.category,
        urgent=tags.urgent,
        topic_ref=tags.topic_ref,
        revision_of=tags.revision_of,
        source=source,
        group_id=ctx.chat_group,
        content_hash=content_hash(title, body) if attachment is None else attachment.content_hash,
        submitted_at=ctx.now,
    )
    if attachment is not None:
        draft.attachment_name, draft.attachment_path = attachment.name, attachment.path
        draft.attachment_size = attachment.size
    facts = await ctx.repo.drafts.submission_facts(
        draft, ctx.now - timedelta(hours=1), month_start(ctx.now)
    )
    refuse_flood(ctx, facts.recent)
    original = await _revised_draft(ctx, draft, facts.returned)
    if original is not None:
        tags.inherit(original)
        draft.category, draft.urgent, draft.topic_ref = tags.category, tags.urgent, tags.topic_ref
        draft.revision_of = original.id
    if facts.duplicate is not None:
        raise Refusal("draft_duplicate.txt.j2", existing=await ctx.repo.drafts.get(facts.duplicate))
    await ctx.repo.drafts.create(draft, ctx.member)
    if original is not None:
        await ctx.repo.drafts.record(original, "revised", ctx.member, ctx.now, draft.number)
    if draft.urgent:
        await alert_coordinators(ctx, draft)
    # a new piece comes after every piece of the month so far; a revision keeps its place
    return await receipt(ctx, draft, facts.month_pieces + 1 if original is None else None)


async def alert_coordinators(ctx: Context, draft: Draft) -> None:
    """The fast path of 紧急信息: every coordinator is told privately at once, a message of
    its own (never merged, whatever the hour), so an urgent piece never waits for a digest."""
    unit = await ctx.repo.units.get(draft.unit_id)
    await ctx.tell_coordinators("urgent_to_coordinators.txt.j2", draft=draft, unit=unit.name)


async def _revised_draft(ctx: Context, draft: Draft, same_title: int | None) -> Draft | None:
    """The returned draft `draft` revises: the one named by #G12, else the unit's returned
    draft of the same title (`same_title`)."""
    if draft.revision_of is None:
        return await ctx.repo.drafts.get(same_title) if same_title is not None else None
    original = await ctx.repo.drafts.get(draft.revision_of)
    if (
        original is None
        or original.unit_id != draft.unit_id
        or original.status != DraftStatus.returned
    ):
        raise Refusal("revision_invalid.txt.j2", number=f"G{draft.revision_of}")
    return original


async def receipt(ctx: Context, draft: Draft, nth: int | None = None) -> Receipt:
    """`nth`: the piece's place in its month when the caller knows it."""
    unit = await ctx.repo.units.get(draft.unit_id)
    if nth is None:
        nth = await ctx.repo.drafts.piece_position(draft, month_start(draft.piece_at))
    note = None
    if draft.topic_ref:  # a draft for a closed or unknown topic is still accepted, with a note
        topic = await ctx.repo.topics.get(int(draft.topic_ref[1:]))
        note = "unknown" if topic is None else ("closed" if topic.status != "open" else None)
    return Receipt(draft, unit.name, nth, note)


async def withdraw(ctx: Context, draft: Draft) -> None:
    """The actor's unit withdraws its draft before review."""
    require_own_unit(ctx, draft)
    if draft.status not in (DraftStatus.submitted, DraftStatus.awaiting_file):
        raise Refusal("withdraw_too_late.txt.j2", draft=draft)
    draft.status = DraftStatus.withdrawn
    await ctx.repo.drafts.reinstate_previous(draft)
    await ctx.repo.drafts.record(draft, "withdraw", ctx.member, ctx.now)


# A long draft is collected from the officer's next messages in the chat (a conversation
# of the chat door): started by /报送 without a body, ended by /完成 or /取消.


async def start_collecting(ctx: Context, header: str) -> None:
    """Collect this person's next messages in this chat as the body of draft `header`."""
    await ctx.repo.collecting.start(*ctx.conversation_key, header, ctx.now)
    ctx.open_conversation(router.name)


@router.conversation
async def collect(ctx: Context, event: Event) -> None:
    """A non-command message while /报送 is collecting: append it to the body."""
    session = await ctx.repo.collecting.get(event.chat_type, event.chat_id, event.user_id)
    if session is None or ctx.role != Role.officer:
        return
    text = "".join(s.data.get("text", "") for s in event.segments if s.type == "text").strip()
    if not text:
        return
    total = sum(len(p) for p in json.loads(session.parts)) + len(text)
    if total > ctx.app.config.limits.max_message_chars:
        raise Refusal(
            "too_long.txt.j2", limit=ctx.app.config.limits.max_message_chars, length=total
        )
    ctx.repo.collecting.append(session, text, ctx.now)


async def finish_collecting(ctx: Context) -> Receipt:
    """Submit the collected messages as one draft."""
    session, parts = await end_collecting(ctx)
    body = "\n".join(parts).strip()
    if not body:
        raise Refusal("collect_empty.txt.j2")
    tokens = session.header.split()
    tags = parse_tags([normalize(t)[1:] for t in tokens if normalize(t).startswith("#")])
    title = " ".join(t for t in tokens if not normalize(t).startswith("#"))
    return await submit_draft(ctx, title, body, tags, ctx.event.chat_type)


async def end_collecting(ctx: Context) -> tuple[CollectSession, list[str]]:
    """End the collection (/完成 submits it, /取消 drops it); returns it and its messages."""
    session = await ctx.repo.collecting.get(*ctx.conversation_key)
    if session is None:
        raise Refusal("collect_none.txt.j2")
    await ctx.repo.collecting.finish(session)
    ctx.close_conversation()
    return session, json.loads(session.parts)


@router.on_startup
async def restore_conversations(app: BotApp) -> None:
    """Collections survive a restart: they are rows; the core's registry is rebuilt."""
    async with app.db.reader() as s:
        keys = await Repo(s).collecting.all_keys()
    app.conversations.update(dict.fromkeys(keys, router.name))


@router.on_tick
async def prompt_idle_collections(app: BotApp, now: datetime) -> None:
    """Ask people whose collected draft has been idle whether to keep it."""
    cutoff = now - timedelta(minutes=app.config.limits.collect_idle_minutes)
    async with app.acting(None) as ctx:
        for session in await ctx.repo.collecting.idle_since(cutoff):
            text = ctx.render("collect_idle_prompt.txt.j2", header=session.header)
            if session.chat_type == "group":
                ctx.post(session.chat_id, text, mention=[session.im_id])
            else:
                ctx.tell(session.im_id, text)
            session.prompted = True


# ------------------------------------------------------------------ chat commands


def reply_receipt(ctx: Context, receipt: Receipt) -> None:
    """The receipt in the chat: one line in a group, the details in private chat."""
    template = "draft_receipt.txt.j2" if ctx.in_group else "draft_receipt_private.txt.j2"
    ctx.reply(template, **vars(receipt))


@router.command("报送", aliases=("submit",), roles=OFFICERS)
async def submit_command(ctx: Context, cmd: Command) -> None:
    tags = parse_tags(cmd.tags)
    check_title(cmd.rest)
    if not cmd.body.strip():
        # No body: collect this person's next messages in this chat until /完成.
        await check_flood(ctx)
        await start_collecting(ctx, cmd.head)
        ctx.reply(
            "collect_started.txt.j2",
            title=cmd.rest,
            idle=ctx.app.config.limits.collect_idle_minutes,
        )
        return
    reply_receipt(
        ctx, await submit_draft(ctx, cmd.rest, cmd.body.strip(), tags, ctx.event.chat_type)
    )


@router.command("完成", aliases=("done",), roles=OFFICERS)
async def finish_command(ctx: Context, cmd: Command) -> None:
    reply_receipt(ctx, await finish_collecting(ctx))


@router.command("取消", aliases=("cancel",), roles=OFFICERS)
async def cancel_command(ctx: Context, cmd: Command) -> None:
    await end_collecting(ctx)
    ctx.reply("collect_cancelled.txt.j2")


@router.command("撤回", aliases=("withdraw",), roles=OFFICERS)
async def withdraw_command(ctx: Context, cmd: Command) -> None:
    draft = await draft_arg(ctx, cmd)
    await withdraw(ctx, draft)
    ctx.reply("withdrawn.txt.j2", draft=draft)


@router.command("我的稿件", aliases=("mine",), roles=OFFICERS)
async def my_drafts(ctx: Context, cmd: Command) -> None:
    limit = 5 if ctx.in_group else 20
    drafts, total = await ctx.repo.drafts.recent_for_unit(ctx.member.unit_id, limit)
    unit = await ctx.repo.units.get(ctx.member.unit_id)
    ctx.reply("my_drafts.txt.j2", drafts=drafts, total=total, unit=unit.name, in_group=ctx.in_group)


@router.command("稿件", aliases=("draft",), roles=MEMBERS - {Role.leader})
async def show_draft(ctx: Context, cmd: Command) -> None:
    """One draft with its history, privately; a long body a page at a time
    (`/稿件 G12 2`), so one draft never floods the chat."""
    draft = await draft_arg(ctx, cmd)
    require_own_unit(ctx, draft)
    pages = max(1, -(-len(draft.body) // BODY_PAGE))
    page = int(cmd.words[1]) if len(cmd.words) > 1 and _PAGE.match(cmd.words[1]) else 1
    if not 1 <= page <= pages:
        raise Refusal("draft_page_invalid.txt.j2", draft=draft, pages=pages)
    unit = await ctx.repo.units.get(draft.unit_id)
    submitter = await ctx.repo.members.get(draft.submitter_id)
    history = await ctx.repo.drafts.history(draft.id) if page == 1 else []
    ctx.reply_private(
        "draft_detail.txt.j2",
        draft=draft,
        unit=unit.name,
        submitter=submitter.name,
        history=history,
        body=draft.body[(page - 1) * BODY_PAGE : page * BODY_PAGE],
        page=page,
        pages=pages,
        rest=max(0, len(draft.body) - page * BODY_PAGE),
    )
    if ctx.in_group:
        ctx.reply("draft_sent_private.txt.j2", draft=draft)
