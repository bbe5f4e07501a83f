"""Files: an officer's upload (group file notice or a private file message)
becomes a draft. The event is recorded as a download job in its own
transaction; the download runs in the background and registers the draft,
or, if the file cannot be fetched, a draft awaiting the file.

Every file is hostile until read:
* it is fetched over http(s) only from the OneBot API's own address, a public
  internet address (QQ's file servers) or `[files] allowed_hosts` — never from
  another loopback or private address, redirects included; a local path is read
  only inside `[files] local_dir` and never when it is one of the bot's own files;
* a download that receives nothing gives its place to the next file and fails
  after `limits.download_stall_seconds`;
* it is read in a child process with a memory and time budget
  (`file_reader.py`), and its text is capped by `limits.max_message_chars`;
* it is stored under a generated name (the uploader's name is kept as data);
* a job is tried at most MAX_ATTEMPTS times, counted before the risky work
  starts, so a crash while reading can never make every restart crash again.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import socket
import sys
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from bot.config import Config, database_url
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
from .file_reader import clean

if TYPE_CHECKING:
    from bot.app import BotApp

router = Router("files")
log = logging.getLogger(__name__)

READABLE = {".docx", ".txt"}
ATTACHMENT_ONLY = {".doc", ".wps", ".pdf"}
READER = Path(__file__).with_name("file_reader.py")
MAX_ATTEMPTS = 3
MAX_NAME_CHARS = 255  # a longer name (the event may be 4 MiB) is cut, keeping its extension
MAX_REDIRECTS = 3
DOWNLOAD_DEADLINE = 600  # seconds for one download, however steadily it trickles
REDIRECTS = (301, 302, 303, 307, 308)
# Could not fetch: the upload is kept as a draft awaiting the file. Any other
# problem refuses the file.
FETCH_FAILURES = {"no_url", "http_error", "network", "stalled", "refused"}


class FileProblem(Exception):
    """Why a file could not be fetched or read; `code` picks the template wording."""

    def __init__(self, code: str, chars: int | None = None) -> None:
        super().__init__(code)
        self.code, self.chars = code, chars


@dataclass
class Parsed:
    title: str
    body: str
    char_count: int | None


def extension(name: str) -> str:
    return PurePath(name).suffix.lower()


def clean_name(name: str) -> str:
    """A file name without control characters, at most MAX_NAME_CHARS long."""
    name = clean(name).strip()
    if len(name) > MAX_NAME_CHARS:
        ext = extension(name)[:16]
        name = name[: MAX_NAME_CHARS - len(ext)] + ext
    return name


@router.file(roles=OFFICERS)  # files from anyone else are ignored
async def receive(ctx: Context, event: Event) -> None:
    app = ctx.app
    ref = event.file
    name = clean_name(ref.name)
    if extension(name) not in READABLE | ATTACHMENT_ONLY:
        raise Refusal(
            "file_type_unsupported.txt.j2",
            name=name,
            types=sorted(READABLE | ATTACHMENT_ONLY),
        )
    limit_mb = app.config.limits.max_file_mb
    if ref.size is not None and ref.size > limit_mb * 1024 * 1024:
        raise Refusal("file_too_large.txt.j2", name=name, limit_mb=limit_mb)
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
            name=name,
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
        pending = await Repo(s).files.pending_ids(app.config.onebot.self_id or None)
    for job_id in pending:
        app.spawn(download(app, job_id))


async def download(app: BotApp, job_id: int) -> None:
    """Fetch, read and register one uploaded file (resumable after a restart)."""
    async with app.db.transaction() as s:  # the attempt counts before anything can crash
        job = await s.get(FileJob, job_id)
        if job is None or job.status != "pending":
            return
        job.attempts += 1
        member_im = (await s.get(Member, job.member_id)).im_id
    parsed, stored, problem = None, None, None
    try:
        if job.attempts > MAX_ATTEMPTS:
            log.warning("file job %s given up after %s attempts", job.id, MAX_ATTEMPTS)
            raise FileProblem("gave_up")
        async with _DownloadSlot(app) as slot:
            data = await fetch(app, job, slot)
        async with app.downloads:
            parsed = await read(app, job.name, data)
        stored = await asyncio.to_thread(
            _store, app.config.files_path, job, data, parsed.char_count
        )
    except FileProblem as exc:
        problem = exc
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
            row.status, row.error = "failed", problem.code
            if problem.code not in FETCH_FAILURES:
                limits = app.config.limits
                raise Refusal(
                    "file_unreadable.txt.j2",
                    name=job.name,
                    problem=problem.code,
                    chars=problem.chars,
                    limit_mb=limits.max_file_mb,
                    limit_chars=limits.max_message_chars,
                    attempts=MAX_ATTEMPTS,
                )
        if ctx.role != Role.officer or ctx.member.unit_id != job.unit_id:
            row.status = "failed"
            return  # the uploader left the unit meanwhile
        if problem is not None:  # could not fetch: keep the upload as a draft awaiting the file
            draft = await _awaiting_draft(ctx, job)
            ctx.reply("file_download_failed.txt.j2", name=job.name, draft=draft)
            return
        waiting = await ctx.repo.drafts.awaiting_file(job.unit_id, job.name)
        if waiting is not None:  # the file a draft was waiting for
            _fill(waiting, parsed, stored)
            await ctx.repo.drafts.record(waiting, "file_received", ctx.member, ctx.now)
            done = await receipt(ctx, waiting)
        else:
            done = await submit_draft(ctx, parsed.title, parsed.body, Tags(), "file", stored)
        reply_receipt(ctx, done)
        row.draft_id = done.draft.id
        row.status = "done"

    await app.dispatcher.run(event, finish)
    async with app.db.transaction() as s:  # a refusal rolled the job row back: settle it
        row = await s.get(FileJob, job.id)
        if row.status == "pending":
            row.status, row.error = "failed", problem.code if problem else "refused"


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


def _store(folder: Path, job: FileJob, data: bytes, char_count: int | None) -> Attachment:
    """Write the file under a generated name; the uploader's name is kept as data
    (a Chinese name of 85 characters is already over the file system's 255 bytes)."""
    digest = bytes_hash(data)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{job.id}-{digest[:12]}{extension(job.name)}"
    path.write_bytes(data)
    return Attachment(job.name, str(path), len(data), digest, char_count)


# ------------------------------------------------------------------ fetching


async def fetch(app: BotApp, job: FileJob, slot: _DownloadSlot) -> bytes:
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
            return _b64(data["base64"], limit)
        if isinstance(data.get("url"), str) and data["url"].startswith(("http://", "https://")):
            url = data["url"]
        elif isinstance(data.get("file"), str):
            return await asyncio.to_thread(_read_local, app.config, data["file"], limit)
    if url is None:
        raise FileProblem("no_url")
    return await _download(app.config, url, limit, slot)


def _read_local(config: Config, raw: str, limit: int) -> bytes:
    """A path from get_file (the implementation runs on this machine): read only
    inside `[files] local_dir`, and never one of the bot's own files."""
    if not config.files.local_dir:
        log.warning("get_file answered a local path; refused ([files] local_dir is not set)")
        raise FileProblem("refused")
    base = (config.base_dir / config.files.local_dir).resolve()
    try:
        path = Path(raw).resolve(strict=True)  # symbolic links followed before the check
    except (OSError, RuntimeError, ValueError):
        raise FileProblem("no_url") from None
    if not path.is_relative_to(base) or _own_file(config, path) or not path.is_file():
        log.warning("get_file path %s refused: outside [files] local_dir or the bot's own", path)
        raise FileProblem("refused")
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileProblem("too_large")
    return data


def _own_file(config: Config, path: Path) -> bool:
    """The config, database, rule file or stored uploads: never read as an upload."""
    own = [config.files_path]
    if config.config_file is not None:
        own.append(config.config_file)
    if config.bot.scoring:
        own.append((config.base_dir / config.bot.scoring).resolve())
    url, prefix = database_url(config), "sqlite+aiosqlite:///"
    if url.startswith(prefix):
        db = Path(url[len(prefix) :]).resolve()
        if path.parent == db.parent and path.name.startswith(db.name):  # -wal, -shm, -journal
            return True
    return any(path.is_relative_to(p) for p in own)


def _b64(text: str, limit: int) -> bytes:
    if len(text) > limit * 4 // 3 + 16:
        raise FileProblem("too_large")
    try:
        raw = base64.b64decode(text.removeprefix("base64://"), validate=False)
    except ValueError:
        raise FileProblem("no_url") from None
    if len(raw) > limit:
        raise FileProblem("too_large")
    return raw


Trusted = set[tuple[str, int | None]]  # (host, port); port None: any port


def _trusted(config: Config) -> Trusted:
    """The OneBot API's own address and `[files] allowed_hosts`: trusted even on a
    loopback or private address."""
    out: Trusted = set()
    if config.onebot.api_url:
        parts = urlsplit(config.onebot.api_url)
        if parts.hostname:
            out.add((parts.hostname, parts.port or _default_port(parts.scheme)))
    for entry in config.files.allowed_hosts:
        parts = urlsplit("//" + entry)
        if parts.hostname:
            out.add((parts.hostname, parts.port))
    return out


def _default_port(scheme: str) -> int:
    return 443 if scheme in ("https", "wss") else 80


def _is_trusted(trusted: Trusted, host: str, port: int) -> bool:
    host = host.lower().strip("[]")
    return (host, port) in trusted or (host, None) in trusted


class _NotPublic(OSError):
    """A host name that resolves to no address the bot may fetch from."""


class _GuardedResolver(AbstractResolver):
    """aiohttp's resolver, keeping only public internet addresses unless the host
    is trusted: checked at connect time, for every redirect, so a name cannot be
    pointed at the bot's own machine or network (DNS rebinding included)."""

    def __init__(self, trusted: Trusted) -> None:
        self._inner = DefaultResolver()
        self._trusted = trusted

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if _is_trusted(self._trusted, host, port):
            return found
        public = [r for r in found if ipaddress.ip_address(r["host"]).is_global]
        if not public:
            raise _NotPublic(f"{host} has no public address")
        return public

    async def close(self) -> None:
        await self._inner.close()


def _check_url(url: str, trusted: Trusted) -> None:
    """http(s) only; an address given as a number must be public or trusted (a
    name is checked by the resolver once it is resolved)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FileProblem("refused")
    if _is_trusted(trusted, parts.hostname, parts.port or _default_port(parts.scheme)):
        return
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return
    if not address.is_global:
        raise FileProblem("refused")


async def _download(config: Config, url: str, limit: int, slot: _DownloadSlot) -> bytes:
    trusted = _trusted(config)
    stall = config.limits.download_stall_seconds
    timeout = aiohttp.ClientTimeout(total=DOWNLOAD_DEADLINE, sock_connect=stall, sock_read=stall)
    connector = aiohttp.TCPConnector(resolver=_GuardedResolver(trusted))
    try:
        async with aiohttp.ClientSession(
            timeout=timeout, connector=connector, auto_decompress=False
        ) as session:
            for _ in range(MAX_REDIRECTS + 1):
                _check_url(url, trusted)
                async with session.get(url, allow_redirects=False) as resp:
                    if resp.status in REDIRECTS and "Location" in resp.headers:
                        url = urljoin(str(resp.url), resp.headers["Location"])
                        continue
                    if resp.status != 200:
                        raise FileProblem("http_error")
                    if resp.content_length is not None and resp.content_length > limit:
                        raise FileProblem("too_large")
                    buf = bytearray()
                    async for chunk in resp.content.iter_chunked(64 * 1024):
                        slot.progress()
                        buf.extend(chunk)
                        if len(buf) > limit:
                            raise FileProblem("too_large")
                    return bytes(buf)
            raise FileProblem("http_error")  # too many redirects
    except FileProblem as problem:
        if problem.code == "refused":
            log.warning("download from %s refused: not http(s) or not a public address "
                        "(trusted: api_url and [files] allowed_hosts)", urlsplit(url).netloc)  # fmt: skip
        raise
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, _NotPublic):
            log.warning("download from %s refused: %s", urlsplit(url).netloc, exc.os_error)
            raise FileProblem("refused") from None
        raise FileProblem("network") from None
    except TimeoutError:
        log.warning("download from %s stalled", urlsplit(url).netloc)
        raise FileProblem("stalled") from None
    except (aiohttp.ClientError, ValueError, OSError):
        raise FileProblem("network") from None


class _DownloadSlot:
    """A place among `limits.concurrent_downloads`. A download that has received
    nothing for a fifth of `download_stall_seconds` gives its place to the next
    file (and still fails once the whole stall time has passed), so stalled
    downloads never hold up the uploads queued behind them."""

    def __init__(self, app: BotApp) -> None:
        self._semaphore = app.downloads
        self._patience = app.config.limits.download_stall_seconds / 5
        self._held = False
        self._moved = asyncio.Event()
        self._watchdog: asyncio.Task | None = None

    async def __aenter__(self) -> _DownloadSlot:
        await self._semaphore.acquire()
        self._held = True
        self._watchdog = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._watchdog.cancel()
        self._release()

    def progress(self) -> None:
        self._moved.set()

    async def _watch(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._moved.wait(), self._patience)
            except TimeoutError:
                self._release()
                return
            self._moved.clear()

    def _release(self) -> None:
        if self._held:
            self._held = False
            self._semaphore.release()


# ------------------------------------------------------------------ reading


async def read(app: BotApp, name: str, data: bytes) -> Parsed:
    """Title and body from a .docx or .txt, read by a child process within
    `limits.parse_memory_mb` and `limits.parse_seconds`; other accepted types are
    attachments."""
    ext = extension(name)
    if ext in ATTACHMENT_ONLY:
        return Parsed(_title_from_name(name), "", None)
    limits = app.config.limits
    args = (
        ext,
        *map(str, (limits.max_message_chars, limits.parse_memory_mb, limits.parse_seconds)),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", str(READER), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(data), limits.parse_seconds)
    except TimeoutError:
        log.warning("reading %r took over %s s: stopped", name, limits.parse_seconds)
        raise FileProblem("over_budget") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    try:
        answer: dict[str, Any] = json.loads(out)
    except ValueError:  # the reader died without answering (out of its memory budget)
        log.warning("reading %r failed (exit %s): over budget", name, proc.returncode)
        raise FileProblem("over_budget") from None
    if "problem" in answer:
        raise FileProblem(answer["problem"], answer.get("chars"))
    return Parsed(answer["title"][:MAX_TITLE_CHARS], answer["body"], char_count(answer["body"]))
