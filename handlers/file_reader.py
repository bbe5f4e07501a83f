"""Reading an uploaded .docx or .txt, meant to run in a child process so that a
hostile file can cost neither the bot's memory nor its event loop.

`handlers/files.py` starts `python -I file_reader.py EXT MAX_CHARS MEMORY_MB SECONDS`,
writes the file to its stdin and kills it when its time budget is spent. The
child caps its own address space and CPU time (so it cannot outlive a killed
bot for long), checks a .docx's declared sizes before inflating anything, and
answers one JSON object on stdout:
`{"title", "body"}` or `{"problem", "chars"?}`.

Only the standard library is imported at module level: the parent imports
`clean` from here, and the child must start fast.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from typing import Any

# A .docx is a zip. Its declared sizes are checked before anything is inflated;
# zipfile itself stops at a member's declared size (and then fails its CRC), so
# a member cannot inflate beyond what it declares.
MAX_MEMBERS = 1000
MAX_XML_BYTES = 32 * 1024 * 1024  # all XML parts together, inflated (text, styles, tables)
MAX_UNZIPPED_BYTES = 128 * 1024 * 1024  # every part, images included, inflated
MAX_RATIO = 100  # inflated / compressed, for a part over 1 MiB (real XML: 5-20)
RATIO_FROM = 1024 * 1024

# Control characters (C0, DEL, C1) are dropped from titles and bodies; a body
# keeps its line breaks and tabs.
_CONTROLS = {c: None for c in (*range(0x20), *range(0x7F, 0xA0))}
_BODY_CONTROLS = {c: v for c, v in _CONTROLS.items() if chr(c) not in "\n\t"}


class Problem(Exception):
    """Why the file was not read; the code picks the wording of the reply."""

    def __init__(self, code: str, **detail: Any) -> None:
        super().__init__(code)
        self.answer = {"problem": code, **detail}


def clean(text: str, keep_lines: bool = False) -> str:
    """`text` without control characters (a NUL from a file name, a form feed...)."""
    return text.translate(_BODY_CONTROLS if keep_lines else _CONTROLS)


def check_zip(data: bytes) -> None:
    """Refuse a zip whose declared contents could exhaust memory when inflated."""
    try:
        members = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, ValueError, EOFError):
        raise Problem("unreadable") from None
    xml = sum(m.file_size for m in members if m.filename.endswith((".xml", ".rels")))
    if (
        len(members) > MAX_MEMBERS
        or xml > MAX_XML_BYTES
        or sum(m.file_size for m in members) > MAX_UNZIPPED_BYTES
        or any(
            m.file_size > RATIO_FROM and m.file_size > MAX_RATIO * max(m.compress_size, 1)
            for m in members
        )
    ):
        raise Problem("bomb")


def docx_paragraphs(data: bytes) -> list[str]:
    check_zip(data)
    import docx  # python-docx (lxml refuses entity expansion bombs: "amplification factor")

    try:
        document = docx.Document(io.BytesIO(data))
    except MemoryError:
        raise
    except Exception:  # a broken .docx raises many kinds (BadZipFile, KeyError, lxml errors)
        raise Problem("unreadable") from None
    return [p.text for p in document.paragraphs]


def decode_text(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise Problem("unreadable")


def read(ext: str, data: bytes, max_chars: int) -> dict[str, Any]:
    """Title (first non-empty paragraph) and body (the rest) of a .docx or .txt."""
    paragraphs = docx_paragraphs(data) if ext == ".docx" else decode_text(data).splitlines()
    lines = [line for p in paragraphs if (line := clean(p, keep_lines=True).strip())]
    if not lines:
        raise Problem("empty")
    chars = sum(len(line) for line in lines) + len(lines) - 1
    if chars > max_chars:  # the message-length limit applies to files too
        raise Problem("too_long", chars=chars)
    return {"title": clean(lines[0]), "body": "\n".join(lines[1:])}


def main() -> None:
    ext, max_chars, memory_mb, seconds = sys.argv[1], *map(int, sys.argv[2:5])
    try:
        import resource

        memory = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (seconds + 1, seconds + 2))
    except (ImportError, ValueError, OSError):  # no rlimits here: the parent's timeout only
        pass
    data = sys.stdin.buffer.read()
    try:
        answer = read(ext, data, max_chars)
    except Problem as problem:
        answer = problem.answer
    except MemoryError:
        answer = {"problem": "over_budget"}
    sys.stdout.write(json.dumps(answer, ensure_ascii=False))


if __name__ == "__main__":
    main()
