"""The county bulletin: /编期 compiles an issue of 《bot.bulletin》 from drafts, previews
and prints it as a Word document; /期刊 lists and fetches the printed issues.

Printing an issue is the county-level adoption of each piece in it, recorded by the
same operation /采用 uses (review.adopt: points from the rule file, history, the
units' notices). An issue is numbered per year and type (第N期, from 1 each year;
[bulletin] first_number for the first the bot ever numbers). Every edit of the issue
in preparation names the version it was made on (`seen`): an edit made on what the
editor saw before someone else's edit is refused, never applied over it.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path

from bot.context import Context, Refusal
from bot.pages import BadInput, Download, Form, Page, View
from bot.router import COORDINATORS, MEMBERS, Command, Router, normalize
from bot.rules import FORM_WORDS, Outlet
from storage.models import BulletinEntry, BulletinIssue, Draft, DraftStatus

from . import bulletin_doc as doc
from .common import drafts_named, usage
from .review import adopt, revoke_adoption
from .standings import send_export

router = Router("bulletin")

CANDIDATES_SHOWN = 20
_ISSUE = re.compile(r"^第?(\d{1,4})期?$")
_YEAR = re.compile(r"^(\d{4})年?$")
REGULAR_WORDS = ("常规", "普通", "regular")
BULLETIN_FORMS = ("full", "excerpt")  # a piece is printed whole or in part


# ------------------------------------------------------------------ lookups


def bulletin_outlet(ctx: Context | View) -> Outlet:
    """The rule file's outlet of the county bulletin: the one named like bot.bulletin,
    else the first county-level outlet (what “/采用 G12 县” names)."""
    rules = ctx.app.rules
    outlet = rules.outlet_named(ctx.app.config.bot.bulletin) or next(
        (o for o in rules.outlets if o.level == "county"), None
    )
    if outlet is None:
        raise Refusal("bulletin_no_outlet.txt.j2")
    return outlet


def kind_word(ctx: Context | View, word: str) -> str | None:
    """An issue type from a word: "" for a regular issue, a configured type, or None."""
    if word in REGULAR_WORDS:
        return ""
    return word if word in ctx.app.config.bulletin.types else None


async def next_number(
    ctx: Context | View, year: int, kind: str, other_than: int | None = None
) -> int:
    """第N期: one after the year's last of this type; a year without issues starts at 1,
    or at [bulletin] first_number when the bot has numbered no issue at all yet."""
    bulletins = ctx.repo.bulletins
    last = await bulletins.last_number(year, kind)
    if last is not None:
        return last + 1
    return 1 if await bulletins.any_issue(other_than) else ctx.app.config.bulletin.first_number


async def preparing(ctx: Context) -> BulletinIssue:
    issue = await ctx.repo.bulletins.preparing()
    if issue is None:
        raise Refusal("bulletin_none.txt.j2")
    return issue


async def check_printable(ctx: Context, issue: BulletinIssue, draft: Draft) -> None:
    """A draft may go into (and be printed in) `issue`: live, not withdrawn, returned or
    rejected, of the issue's year, not printed by the bulletin yet."""
    reason = None
    if draft.status in (DraftStatus.withdrawn, DraftStatus.awaiting_file):
        reason = "withdrawn"
    elif draft.status in (DraftStatus.rejected, DraftStatus.returned):
        reason = draft.status.value
    elif not draft.live:
        reason = "superseded"
    elif draft.piece_at.year != issue.year:
        reason = "other_year"
    if reason is not None:
        raise Refusal("bulletin_cannot_add.txt.j2", draft=draft, reason=reason, issue=issue)
    printed = await ctx.repo.bulletins.printed_in(draft.id)
    if printed is not None and printed.id != issue.id:
        raise Refusal("bulletin_cannot_add.txt.j2", draft=draft, reason="printed", issue=printed)
    adoption = await ctx.repo.reviews.active_adoption(draft.id, bulletin_outlet(ctx).name)
    if adoption is not None:
        raise Refusal("adopt_duplicate.txt.j2", draft=draft, adoption=adoption)


# ------------------------------------------------------------------ operations


async def open_issue(ctx: Context, kind: str = "") -> BulletinIssue:
    """The issue in preparation, or a new one of `kind` numbered next in this year."""
    issue = await ctx.repo.bulletins.preparing()
    if issue is not None:
        return issue
    year = ctx.now.year
    issue = BulletinIssue(
        year=year, kind=kind, number=await next_number(ctx, year, kind),
        created_at=ctx.now, created_by=ctx.member.id,
    )  # fmt: skip
    return await ctx.repo.bulletins.create(issue)


async def _edit(ctx: Context, issue: BulletinIssue, seen: int) -> None:
    """Count an edit made on version `seen` of the issue in preparation, or refuse it."""
    if issue.status != "preparing":
        raise Refusal("bulletin_already_printed.txt.j2", issue=issue)
    if not await ctx.repo.bulletins.bump(issue, seen):
        raise Refusal("bulletin_changed.txt.j2", issue=issue)


async def add_pieces(ctx: Context, issue: BulletinIssue, drafts: list[Draft], seen: int) -> None:
    await _edit(ctx, issue, seen)
    entries = await ctx.repo.bulletins.entries(issue.id)
    present = {d.id for _, d, _ in entries}
    position = max((e.position for e, _, _ in entries), default=0)
    for draft in drafts:
        if draft.id in present:
            raise Refusal("bulletin_cannot_add.txt.j2", draft=draft, reason="in_issue", issue=issue)
        await check_printable(ctx, issue, draft)
        position += 1
        present.add(draft.id)
        ctx.repo.bulletins.add_entry(
            BulletinEntry(issue_id=issue.id, draft_id=draft.id, position=position,
                          added_at=ctx.now, added_by=ctx.member.id)
        )  # fmt: skip


async def _entry(ctx: Context, issue: BulletinIssue, draft: Draft) -> BulletinEntry:
    for entry, d, _ in await ctx.repo.bulletins.entries(issue.id):
        if d.id == draft.id:
            return entry
    raise Refusal("bulletin_not_in_issue.txt.j2", draft=draft, issue=issue)


async def remove_piece(ctx: Context, issue: BulletinIssue, draft: Draft, seen: int) -> None:
    await _edit(ctx, issue, seen)
    await ctx.repo.bulletins.remove_entry(await _entry(ctx, issue, draft))


async def arrange(ctx: Context, issue: BulletinIssue, first: list[Draft], seen: int) -> None:
    """`first` lead the issue in this order; the other pieces follow as they were."""
    await _edit(ctx, issue, seen)
    entries = await ctx.repo.bulletins.entries(issue.id)
    by_draft = {d.id: e for e, d, _ in entries}
    for draft in first:
        if draft.id not in by_draft:
            raise Refusal("bulletin_not_in_issue.txt.j2", draft=draft, issue=issue)
    lead = list(dict.fromkeys(d.id for d in first))
    order = lead + [d.id for _, d, _ in entries if d.id not in lead]
    for position, draft_id in enumerate(order, 1):
        by_draft[draft_id].position = position


async def move_piece(
    ctx: Context, issue: BulletinIssue, draft: Draft, step: int, seen: int
) -> None:
    """One place up (step -1) or down (+1): the console's arrows."""
    ids = [d.id for _, d, _ in await ctx.repo.bulletins.entries(issue.id)]
    if draft.id not in ids:
        raise Refusal("bulletin_not_in_issue.txt.j2", draft=draft, issue=issue)
    i = ids.index(draft.id)
    j = min(max(i + step, 0), len(ids) - 1)
    ids[i], ids[j] = ids[j], ids[i]
    drafts = {d.id: d for _, d, _ in await ctx.repo.bulletins.entries(issue.id)}
    await arrange(ctx, issue, [drafts[i] for i in ids], seen)


async def set_form(ctx: Context, issue: BulletinIssue, draft: Draft, form: str, seen: int) -> None:
    if form not in BULLETIN_FORMS or form not in bulletin_outlet(ctx).points:
        raise Refusal("adopt_bad_form.txt.j2", outlet=bulletin_outlet(ctx), form=form)
    await _edit(ctx, issue, seen)
    (await _entry(ctx, issue, draft)).form = form


async def set_kind(ctx: Context, issue: BulletinIssue, kind: str, seen: int) -> None:
    """A regular issue or a 专报: numbered in its own series."""
    await _edit(ctx, issue, seen)
    if kind != issue.kind:
        number = await next_number(ctx, issue.year, kind, other_than=issue.id)
        issue.kind, issue.number = kind, number


def _base_name(ctx: Context | View, issue: BulletinIssue) -> str:
    name = ctx.app.config.bot.bulletin
    number = ctx.app.renderer.labels["BULLETIN"]["number"].format(number=issue.number)
    return f"{issue.year}年{name}{issue.kind}{number}"


async def write_document(
    ctx: Context | View, issue: BulletinIssue, path: Path, day: datetime, note: str = ""
) -> Path:
    """The issue's pieces as the bulletin's Word document at `path`."""
    config = ctx.app.config
    words = ctx.app.renderer.labels["BULLETIN"]
    b = config.bulletin
    entries = await ctx.repo.bulletins.entries(issue.id)
    data = doc.Issue(
        name=config.bot.bulletin, kind=issue.kind, number=issue.number,
        office=b.office or words["default_office"].format(county=config.bot.county),
        day=day.date(), pieces=[doc.Piece(d.title, d.body, unit) for _, d, unit in entries],
        report_to=b.report_to, send_to=b.send_to, issue_to=b.issue_to,
        editor=b.editor, signer=b.signer, copies=b.copies, note=note,
    )  # fmt: skip
    await asyncio.to_thread(doc.build, path, data, words)
    return path


def _folder(ctx: Context | View, issue: BulletinIssue) -> Path:
    return ctx.app.config.files_path / "bulletin" / str(issue.year)


async def preview(ctx: Context | View, issue: BulletinIssue) -> Path:
    """A draft document of the issue in preparation (marked 预览稿), for checking."""
    if not await ctx.repo.bulletins.entries(issue.id):
        raise Refusal("bulletin_empty.txt.j2", issue=issue)
    note = ctx.app.renderer.labels["BULLETIN"]["preview"]
    path = (
        ctx.app.config.files_path / "bulletin" / "preview" / f"{_base_name(ctx, issue)}{note}.docx"
    )
    return await write_document(ctx, issue, path, ctx.now, note)


async def publish(ctx: Context, issue: BulletinIssue, seen: int) -> Path:
    """印发: every piece adopted by the bulletin (第N期, its form), the document written
    and kept, the issue printed. Refused when printed already or empty: nothing changes."""
    await _edit(ctx, issue, seen)
    entries = await ctx.repo.bulletins.entries(issue.id)
    if not entries:
        raise Refusal("bulletin_empty.txt.j2", issue=issue)
    outlet = bulletin_outlet(ctx)
    for entry, draft, _ in entries:
        draft = await ctx.repo.drafts.get_locked(draft.id)  # as /采用 locks it: one at a time
        await check_printable(ctx, issue, draft)  # a piece may have changed since it was added
        await adopt(ctx, draft, outlet, entry.form, str(issue.number))
    issue.status, issue.printed_at, issue.printed_by = "printed", ctx.now, ctx.member.id
    path = _folder(ctx, issue) / f"{_base_name(ctx, issue)}.docx"
    issue.file_path = str(await write_document(ctx, issue, path, ctx.now))
    return path


async def correct(ctx: Context, issue: BulletinIssue, old: Draft, new: Draft) -> Path:
    """A correction of a printed issue: `new` takes `old`'s place. The old entry stays
    (replaced, with when and by what), its bulletin adoption is revoked (kept in history)
    and `new` is adopted; the corrected document is written beside the original."""
    if issue.status != "printed":
        raise Refusal("bulletin_none_printed.txt.j2", issue=issue)
    entry = await _entry(ctx, issue, old)
    if new.id in {d.id for _, d, _ in await ctx.repo.bulletins.entries(issue.id)}:
        raise Refusal("bulletin_cannot_add.txt.j2", draft=new, reason="in_issue", issue=issue)
    await check_printable(ctx, issue, new)
    if not await ctx.repo.bulletins.bump(issue, issue.version):
        raise Refusal("bulletin_changed.txt.j2", issue=issue)
    outlet = bulletin_outlet(ctx)
    await revoke_adoption(ctx, old, outlet.name)
    entry.replaced_at, entry.replaced_by = ctx.now, new.id
    ctx.repo.bulletins.add_entry(
        BulletinEntry(issue_id=issue.id, draft_id=new.id, position=entry.position,
                      form=entry.form, added_at=ctx.now, added_by=ctx.member.id)
    )  # fmt: skip
    await adopt(ctx, new, outlet, entry.form, str(issue.number))
    issue.corrected_at = ctx.now
    note = ctx.app.renderer.labels["BULLETIN"]["correction"]
    stamp = ctx.now.strftime("%Y%m%d%H%M%S")
    path = _folder(ctx, issue) / f"{_base_name(ctx, issue)}{note}{stamp}.docx"
    issue.file_path = str(await write_document(ctx, issue, path, issue.printed_at, note))
    return path


async def issue_file(ctx: Context | View, issue: BulletinIssue) -> Path:
    """The printed issue's kept document (written again from its rows if it was lost)."""
    path = Path(issue.file_path or _folder(ctx, issue) / f"{_base_name(ctx, issue)}.docx")
    if not await asyncio.to_thread(path.exists):
        await write_document(ctx, issue, path, issue.printed_at)
    return path


def distribute(ctx: Context, path: Path) -> None:
    """After the commit: the printed issue to the group(s) as a file, and privately to
    [bulletin] recipients; where an upload fails the actor is told where the file is."""
    app, self_id, actor = ctx.app, ctx.self_id, ctx.member.im_id
    groups, recipients = ctx.origin_groups, [int(r) for r in app.config.bulletin.recipients]

    def send() -> None:
        for group_id in groups:
            app.spawn(send_export(app, self_id, "group", group_id, actor, path, FALLBACK))
        for im_id in recipients:
            app.spawn(send_export(app, self_id, "private", im_id, im_id, path, FALLBACK))

    ctx.after_commit.append(send)


def send_to_asker(ctx: Context, path: Path) -> None:
    """After the commit: the file in the chat the command came from (like /导出)."""
    app, event = ctx.app, ctx.event
    ctx.after_commit.append(
        lambda: app.spawn(
            send_export(
                app, event.self_id, event.chat_type, event.chat_id, event.user_id, path, FALLBACK
            )
        )
    )


FALLBACK = "bulletin_fallback.txt.j2"


# ------------------------------------------------------------------ chat commands


async def status(ctx: Context | View) -> dict:
    """What /编期 and the console page show: the issue in preparation (or the number
    the next would get), its pieces, and the candidates."""
    issue = await ctx.repo.bulletins.preparing()
    year = issue.year if issue else ctx.now.year
    return {
        "issue": issue,
        "number": issue.number if issue else await next_number(ctx, year, ""),
        "year": year,
        "entries": await ctx.repo.bulletins.entries(issue.id) if issue else [],
        "candidates": await ctx.repo.bulletins.candidates(
            year, bulletin_outlet(ctx).name, CANDIDATES_SHOWN
        ),
        "types": ctx.app.config.bulletin.types,
    }


@router.command("编期", aliases=("compile",), roles=COORDINATORS)
async def compile_command(ctx: Context, cmd: Command) -> None:
    word, rest = (normalize(cmd.words[0]), cmd.words[1:]) if cmd.words else ("", [])
    if word == "":
        ctx.reply("bulletin_status.txt.j2", **await status(ctx))
        return
    if word in ("预览", "preview"):
        path = await preview(ctx, await preparing(ctx))
        ctx.reply("bulletin_preview_ready.txt.j2", name=path.name)
        send_to_asker(ctx, path)
        return
    if word in ("印发", "publish"):
        issue = await ctx.repo.bulletins.preparing()
        if issue is None:
            raise Refusal("bulletin_nothing_to_print.txt.j2")
        path = await publish(ctx, issue, issue.version)
        ctx.reply("bulletin_published.txt.j2", issue=issue, count=len(await ctx.repo.bulletins.entries(issue.id)), name=path.name)  # fmt: skip
        distribute(ctx, path)
        return
    if word in ("更正", "correct"):
        issue, drafts = await _printed_issue_and_drafts(ctx, rest)
        if len(drafts) != 2:
            raise usage(ctx, "编期")
        path = await correct(ctx, issue, *drafts)
        ctx.reply("bulletin_corrected.txt.j2", issue=issue, old=drafts[0], new=drafts[1])
        distribute(ctx, path)
        return
    if word in ("类型", "type"):
        kind = kind_word(ctx, normalize(rest[0])) if len(rest) == 1 else None
        if kind is None:
            raise Refusal("bulletin_bad_type.txt.j2", types=ctx.app.config.bulletin.types)
        issue = await open_issue(ctx, kind)
        await set_kind(ctx, issue, kind, issue.version)
    elif word in ("加入", "add"):
        if not rest:
            raise usage(ctx, "编期")
        drafts = await drafts_named(ctx, rest, "编期")
        issue = await open_issue(ctx)
        await add_pieces(ctx, issue, drafts, issue.version)
    elif word in ("移除", "remove"):
        drafts = await drafts_named(ctx, rest, "编期")
        if len(drafts) != 1:
            raise usage(ctx, "编期")
        issue = await preparing(ctx)
        await remove_piece(ctx, issue, drafts[0], issue.version)
    elif word in ("顺序", "order"):
        drafts = await drafts_named(ctx, rest, "编期")
        if not drafts:
            raise usage(ctx, "编期")
        issue = await preparing(ctx)
        await arrange(ctx, issue, drafts, issue.version)
    elif word in ("形式", "form"):
        if len(rest) != 2 or rest[1] not in FORM_WORDS:
            raise usage(ctx, "编期")
        [draft] = await drafts_named(ctx, rest[:1], "编期")
        issue = await preparing(ctx)
        await set_form(ctx, issue, draft, FORM_WORDS[rest[1]], issue.version)
    else:
        raise usage(ctx, "编期")
    ctx.reply("bulletin_status.txt.j2", **await status(ctx))


async def _printed_issue_and_drafts(
    ctx: Context, words: list[str], command: str = "编期"
) -> tuple[BulletinIssue, list[Draft]]:
    """`[类型] 第N期 [年份] G… G…`: a printed issue (this year's by default) and drafts."""
    kind, number, year, rest = "", None, ctx.now.year, []
    for word in (normalize(w) for w in words):
        if (m := _YEAR.match(word)) is not None and word.endswith("年"):
            year = int(m.group(1))
        elif number is None and (m := _ISSUE.match(word)) is not None and "期" in word:
            number = int(m.group(1))
        elif kind_word(ctx, word) is not None:
            kind = kind_word(ctx, word)
        elif (m := _YEAR.match(word)) is not None:
            year = int(m.group(1))
        else:
            rest.append(word)
    if number is None:
        raise usage(ctx, command)
    issue = await ctx.repo.bulletins.find(year, kind, number)
    if issue is None or issue.status != "printed":
        raise Refusal("bulletin_issue_not_found.txt.j2", year=year, kind=kind, number=number)
    return issue, await drafts_named(ctx, rest, "编期")


@router.command("期刊", aliases=("issues",), roles=MEMBERS)
async def issues_command(ctx: Context, cmd: Command) -> None:
    """`/期刊 [年份]` lists the year's printed issues; `/期刊 第N期 [年份]` sends one again."""
    words = [normalize(w) for w in cmd.words]
    if any("期" in w for w in words):
        issue, extra = await _printed_issue_and_drafts(ctx, words, "期刊")
        if extra:
            raise usage(ctx, "期刊")
        path = await issue_file(ctx, issue)
        ctx.reply("bulletin_sending.txt.j2", name=path.name)
        send_to_asker(ctx, path)
        return
    if len(words) > 1 or (words and _YEAR.match(words[0]) is None):
        raise usage(ctx, "期刊")
    year = int(_YEAR.match(words[0]).group(1)) if words else ctx.now.year
    rows = [
        (issue, await ctx.repo.bulletins.entries(issue.id))
        for issue in await ctx.repo.bulletins.printed(year)
    ]
    ctx.reply("bulletin_list.txt.j2", year=year, rows=rows)


# ------------------------------------------------------------------ console: 编期


@router.page("bulletin", roles=COORDINATORS)
async def bulletin_page(view: View) -> Page:
    """The issue in preparation with arrows to order it, the candidates to add, preview
    and 印发: the same operations as /编期."""
    return Page("console/bulletin.html.j2", {**await status(view), "forms": BULLETIN_FORMS})


async def _form_issue(ctx: Context, form: Form) -> tuple[BulletinIssue, int]:
    """The issue in preparation and the version the page showed (`version`)."""
    seen = form.number("version")
    if seen is None:
        raise BadInput("version")
    issue = await ctx.repo.bulletins.preparing()
    if issue is None and seen == 0:  # the page showed no issue yet: the first add opens one
        issue = await open_issue(ctx)
        seen = issue.version
    if issue is None:
        raise Refusal("bulletin_none.txt.j2")
    return issue, seen


async def _form_draft(ctx: Context, form: Form) -> Draft:
    return (await drafts_named(ctx, [form.required("draft")], "编期"))[0]


@router.action("bulletin_add", roles=COORDINATORS)
async def add_action(ctx: Context, form: Form) -> str:
    issue, seen = await _form_issue(ctx, form)
    draft = await _form_draft(ctx, form)
    await add_pieces(ctx, issue, [draft], seen)
    return ctx.render("bulletin_done.txt.j2", issue=issue)


@router.action("bulletin_remove", roles=COORDINATORS)
async def remove_action(ctx: Context, form: Form) -> str:
    issue, seen = await _form_issue(ctx, form)
    await remove_piece(ctx, issue, await _form_draft(ctx, form), seen)
    return ctx.render("bulletin_done.txt.j2", issue=issue)


@router.action("bulletin_move", roles=COORDINATORS)
async def move_action(ctx: Context, form: Form) -> str:
    step = {"up": -1, "down": 1}[form.choice("step", ("up", "down"), "")]
    issue, seen = await _form_issue(ctx, form)
    await move_piece(ctx, issue, await _form_draft(ctx, form), step, seen)
    return ctx.render("bulletin_done.txt.j2", issue=issue)


@router.action("bulletin_form", roles=COORDINATORS)
async def form_action(ctx: Context, form: Form) -> str:
    issue, seen = await _form_issue(ctx, form)
    draft = await _form_draft(ctx, form)
    await set_form(ctx, issue, draft, form.choice("form", BULLETIN_FORMS, ""), seen)
    return ctx.render("bulletin_done.txt.j2", issue=issue)


@router.action("bulletin_kind", roles=COORDINATORS)
async def kind_action(ctx: Context, form: Form) -> str:
    kind = form.choice("kind", ("", *ctx.app.config.bulletin.types), "")
    issue, seen = await _form_issue(ctx, form)
    await set_kind(ctx, issue, kind, seen)
    return ctx.render("bulletin_done.txt.j2", issue=issue)


@router.action("bulletin_preview", roles=COORDINATORS)
async def preview_action(ctx: Context, form: Form) -> Download:
    issue, _ = await _form_issue(ctx, form)
    path = await preview(ctx, issue)
    return Download(path, path.name)


@router.action("bulletin_publish", roles=COORDINATORS)
async def publish_action(ctx: Context, form: Form) -> str:
    issue, seen = await _form_issue(ctx, form)
    path = await publish(ctx, issue, seen)
    distribute(ctx, path)
    return ctx.render(
        "bulletin_published.txt.j2", issue=issue,
        count=len(await ctx.repo.bulletins.entries(issue.id)), name=path.name,
    )  # fmt: skip
