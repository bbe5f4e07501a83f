"""Files: an officer's upload (group file notice or a private file message)
becomes a draft. The event is recorded as a download job in its own
transaction; the download runs in the background and registers the draft,
or, if the file cannot be fetched, a draft awaiting the file.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

import aiohttp

from bot.context import Context, Refusal
from bot.onebot import Event
from bot.router import OFFICERS, Router
from storage.models import Draft, DraftStatus, FileJob, Member, Role
from storage.queries import Repo, bytes_hash, char_count

from .drafts import (
    MAX_TITLE_CHARS,
    Attachment,
    Tags,
    check_flood,
    receipt,
    reply_receipt,
    submit_draft,
)

if TYPE_CHECKING:
    from bot.app import BotApp

router = Router("files")
log = logging.getLogger(__name__)

READABLE = {".docx", ".txt"}
ATTACHMENT_ONLY = {".doc", ".wps", ".pdf"}


class FileProblem(Exception):
    """Why a file could not be fetched or read; `code` picks the template wording."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Parsed:
    title: str
    body: str
    char_count: int | None


def extension(name: str) -> str:
    return PurePath(name).suffix.lower()


@router.file(roles=OFFICERS)  # files from anyone else are ignored
async def receive(ctx: Context, event: Event) -> None:
    app = ctx.app
    ref = event.file
    if extension(ref.name) not in READABLE | ATTACHMENT_ONLY:
        raise Refusal(
            "file_type_unsupported.txt.j2",
            name=ref.name,
            types=sorted(READABLE | ATTACHMENT_ONLY),
        )
    limit_mb = app.config.limits.max_file_mb
    if ref.size is not None and ref.size > limit_mb * 1024 * 1024:
        raise Refusal("file_too_large.txt.j2", name=ref.name, limit_mb=limit_mb)
    await check_flood(ctx)
    job = await ctx.repo.files.add(
        FileJob(
            member_id=ctx.member.id,
            unit_id=ctx.member.unit_id,
            self_id=event.self_id,
            chat_type=event.chat_type,
            chat_id=event.chat_id,
            file_id=ref.file_id,
            busid=ref.busid,
            name=ref.name,
            size=ref.size,
            url=ref.url,
            created_at=ctx.now,
        )
    )
    ctx.after_commit.append(lambda: app.spawn(download(app, job.id)))


@router.on_startup
async def resume_downloads(app: BotApp) -> None:
    """Downloads interrupted by a restart start again."""
    async with app.db.reader() as s:
        pending = await Repo(s).files.pending_ids()
    for job_id in pending:
        app.spawn(download(app, job_id))


async def download(app: BotApp, job_id: int) -> None:
    """Fetch, read and register one uploaded file (resumable after a restart)."""
    async with app.db.reader() as s:
        job = await s.get(FileJob, job_id)
        member_im = (await s.get(Member, job.member_id)).im_id
    if job.status != "pending":
        return
    data, problem = None, None
    async with app.downloads:
        try:
            data = await fetch(app, job)
            parsed = parse(job.name, data)
        except FileProblem as exc:
            problem = exc.code
    event = Event(
        post_type="message",
        self_id=job.self_id,
        chat_type=job.chat_type,
        group_id=job.chat_id if job.chat_type == "group" else None,
        user_id=member_im,
        key=f"filejob:{job.id}",
    )

    async def finish(ctx: Context) -> None:
        row = await ctx.repo.files.get(job.id)
        if problem is not None:
            row.status, row.error = "failed", problem
        if problem in ("unreadable", "empty", "too_large"):
            raise Refusal(
                "file_unreadable.txt.j2",
                name=job.name,
                problem=problem,
                limit_mb=app.config.limits.max_file_mb,
            )
        if ctx.role != Role.officer or ctx.member.unit_id != job.unit_id:
            row.status = "failed"
            return  # the uploader left the unit meanwhile
        if problem is not None:  # could not fetch: keep the upload as a draft awaiting the file
            draft = await _awaiting_draft(ctx, job)
            ctx.reply("file_download_failed.txt.j2", name=job.name, draft=draft)
            return
        path = _store(app, job, data)
        attachment = Attachment(job.name, str(path), len(data), bytes_hash(data), parsed.char_count)
        waiting = await ctx.repo.drafts.awaiting_file(job.unit_id, job.name)
        if waiting is not None:  # the file a draft was waiting for
            _fill(waiting, parsed, attachment)
            await ctx.repo.drafts.record(waiting, "file_received", ctx.member, ctx.now)
            done = await receipt(ctx, waiting)
        else:
            done = await submit_draft(ctx, parsed.title, parsed.body, Tags(), "file", attachment)
        reply_receipt(ctx, done)
        row.draft_id = done.draft.id
        row.status = "done"

    await app.dispatcher.run(event, finish)
    async with app.db.transaction() as s:  # a refusal rolled the job row back: settle it
        row = await s.get(FileJob, job.id)
        if row.status == "pending":
            row.status, row.error = "failed", problem or "refused"


async def _awaiting_draft(ctx: Context, job: FileJob) -> Draft:
    existing = await ctx.repo.drafts.awaiting_file(job.unit_id, job.name)
    if existing is not None:
        return existing
    draft = Draft(
        unit_id=job.unit_id,
        submitter_id=ctx.member.id,
        title=_title_from_name(job.name),
        source="file",
        group_id=ctx.event.group_id,
        attachment_name=job.name,
        attachment_size=job.size,
        char_count=None,
        status=DraftStatus.awaiting_file,
        content_hash=f"awaiting:{job.file_id}",
        submitted_at=ctx.now,
    )
    return await ctx.repo.drafts.create(draft, ctx.member)


def _fill(draft: Draft, parsed: Parsed, attachment: Attachment) -> None:
    draft.title, draft.body, draft.char_count = parsed.title, parsed.body, attachment.char_count
    draft.attachment_name, draft.attachment_path = attachment.name, attachment.path
    draft.attachment_size, draft.content_hash = attachment.size, attachment.content_hash
    draft.status = DraftStatus.submitted


def _title_from_name(name: str) -> str:
    return PurePath(name).stem[:MAX_TITLE_CHARS] or name


def _store(app: BotApp, job: FileJob, data: bytes) -> Path:
    folder = app.config.files_path
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[\\/:*?\"<>|\x00-\x1f]", "_", PurePath(job.name).name)[:120]
    path = folder / f"{job.id}-{safe}"
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------ fetching


async def fetch(app: BotApp, job: FileJob) -> bytes:
    """The file's bytes: get_group_file_url for group files, falling back to get_file."""
    limit = app.config.limits.max_file_mb * 1024 * 1024
    url = job.url
    if url is None and job.chat_type == "group":
        params = {"group_id": job.chat_id, "file_id": job.file_id}
        if job.busid is not None:
            params["busid"] = job.busid
        result = await app.transport.call(job.self_id, "get_group_file_url", params)
        if result.ok and isinstance(result.data, dict) and isinstance(result.data.get("url"), str):
            url = result.data["url"]
    if url is None:
        result = await app.transport.call(job.self_id, "get_file", {"file_id": job.file_id})
        data = result.data if result.ok and isinstance(result.data, dict) else {}
        if isinstance(data.get("base64"), str):
            raw = _b64(data["base64"])
            if len(raw) > limit:
                raise FileProblem("too_large")
            return raw
        if isinstance(data.get("url"), str):
            url = data["url"]
        elif isinstance(data.get("file"), str):
            local = await asyncio.to_thread(_read_local, Path(data["file"]), limit)
            if local is not None:
                return local
    if url is None:
        raise FileProblem("no_url")
    return await _download(url, limit)


def _read_local(path: Path, limit: int) -> bytes | None:
    """A file path from get_file: readable only when the implementation runs on this machine."""
    if not path.is_file():
        return None
    if path.stat().st_size > limit:
        raise FileProblem("too_large")
    return path.read_bytes()


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text.removeprefix("base64://"), validate=False)
    except ValueError:
        raise FileProblem("no_url") from None


async def _download(url: str, limit: int) -> bytes:
    timeout = aiohttp.ClientTimeout(total=120, sock_connect=10)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
            if resp.status != 200:
                raise FileProblem("http_error")
            if resp.content_length is not None and resp.content_length > limit:
                raise FileProblem("too_large")
            buf = bytearray()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                buf.extend(chunk)
                if len(buf) > limit:
                    raise FileProblem("too_large")
            return bytes(buf)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        raise FileProblem("network") from None


# ------------------------------------------------------------------ reading


def parse(name: str, data: bytes) -> Parsed:
    """Title and body from a .docx or .txt; other accepted types are attachments."""
    ext = extension(name)
    if ext in ATTACHMENT_ONLY:
        return Parsed(_title_from_name(name), "", None)
    if ext == ".docx":
        paragraphs = _docx_paragraphs(data)
    else:
        paragraphs = _decode_text(data).splitlines()
    lines = [p.strip() for p in paragraphs if p.strip()]
    if not lines:
        raise FileProblem("empty")
    title, body = lines[0][:MAX_TITLE_CHARS], "\n".join(lines[1:])
    return Parsed(title, body, char_count(body))


def _docx_paragraphs(data: bytes) -> list[str]:
    import docx  # python-docx; imported here to keep start-up fast

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception:  # a broken .docx raises many kinds (BadZipFile, KeyError, lxml errors)
        raise FileProblem("unreadable") from None
    return [p.text for p in document.paragraphs]


def _decode_text(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise FileProblem("unreadable")
