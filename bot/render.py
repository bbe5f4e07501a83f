"""Jinja2 rendering: plain-text chat messages and autoescaped HTML pages."""

from __future__ import annotations

import contextlib
import hashlib
import pickle
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import jinja2

import templates

from .config import read_toml

TEMPLATE_DIR = Path(templates.__file__).parent

# A platform-safe length for one chat message (DESIGN §4.4).
POST_LIMIT = 1500


def _number(value: float | int | None) -> str:
    """1.0 -> "1", 1.5 -> "1.5"; None -> "—"."""
    if value is None:
        return "—"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _dt(value: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return value.strftime(fmt) if value is not None else "—"


def _cut(line: str, width: int) -> list[str]:
    return [line[i : i + width] for i in range(0, len(line), width)]


def _bytecode_cache(env: jinja2.Environment) -> jinja2.BytecodeCache | None:
    """Compiled templates kept between runs in the user's temporary directory (Jinja2
    checks it is private): a template's first render compiles it, ~60 ms for cli.txt.j2,
    which `xinxibot run` renders as it starts. Entries are per source (Jinja2's checksum)
    and per environment: what changes the compiled code is in the file name."""
    settings = (jinja2.__version__, env.autoescape, env.trim_blocks, env.lstrip_blocks,
                env.keep_trailing_newline, sorted(env.filters))  # fmt: skip
    return _cache_for(hashlib.sha256(repr(settings).encode()).hexdigest()[:16])


class _QuietBytecodeCache(jinja2.FileSystemBytecodeCache):
    """Never fails a render: an entry it cannot read is compiled again, one it cannot
    write (a full disk) is not kept."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except (OSError, EOFError, ValueError, pickle.UnpicklingError):
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


@cache
def _cache_for(tag: str) -> jinja2.BytecodeCache | None:
    try:
        return _QuietBytecodeCache(pattern=f"__xinxibot_{tag}_%s.cache")
    except (OSError, RuntimeError):  # no private temporary directory: compile every time
        return None


class Renderer:
    def __init__(self, globals_: dict[str, Any] | None = None) -> None:
        loader = jinja2.FileSystemLoader(TEMPLATE_DIR)
        # Templates are part of the installed package: compiled once, never re-checked
        # on disk (auto_reload stats the file on every render).
        self.text_env = jinja2.Environment(
            loader=loader,
            auto_reload=False,
            autoescape=False,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        self.html_env = jinja2.Environment(
            loader=loader,
            auto_reload=False,
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.labels = read_toml(TEMPLATE_DIR / "labels.toml")
        for env in (self.text_env, self.html_env):
            env.filters["num"] = _number
            env.filters["dt"] = _dt
            env.globals.update(globals_ or {}, l=self.labels)
            env.bytecode_cache = _bytecode_cache(env)

    def text(self, name: str, /, **context: Any) -> str:
        return self.text_env.get_template(name).render(**context).strip()

    def page(self, name: str, /, **context: Any) -> str:
        return self.html_env.get_template(name).render(**context)

    @cached_property
    def command_help(self) -> dict[str, dict[str, str]]:
        """Usage and summary of every command, from templates/commands.toml."""
        return read_toml(TEMPLATE_DIR / "commands.toml")

    def split(self, text: str, limit: int = POST_LIMIT) -> list[str]:
        """Split a long post at line boundaries into numbered parts; a line longer
        than a part is cut. Linear in the length of the text."""
        if len(text) <= limit:
            return [text]
        width = limit - 16  # room for the part label
        chunks: list[str] = []
        current: list[str] = []
        size = -1  # the length of "\n".join(current)
        for line in text.split("\n"):
            pieces = (line,) if len(line) <= width else _cut(line, width)
            for piece in pieces:
                if current and size + 1 + len(piece) > width:
                    chunks.append("\n".join(current))
                    current, size = [], -1
                current.append(piece)
                size += 1 + len(piece)
        chunks.append("\n".join(current))
        return [
            self.text("part_label.txt.j2", n=i, total=len(chunks)) + "\n" + c
            for i, c in enumerate(chunks, 1)
        ]
