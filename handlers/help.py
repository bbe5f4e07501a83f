"""/帮助: the commands the asker may use, generated from the registrations."""

from __future__ import annotations

from bot.context import Context, Refusal
from bot.router import EVERYONE, Command, Router

router = Router("help")


@router.command("帮助", aliases=("help",), roles=EVERYONE, low_priority=True)
async def show_help(ctx: Context, cmd: Command) -> None:
    table, info = ctx.app.registry, ctx.app.renderer.command_help
    if cmd.words:
        word = cmd.words[0].lstrip("/／")
        spec = table.lookup(word)
        if spec is None:
            raise Refusal(
                "unknown_command.txt.j2", word=word, nearest=table.nearest(word, ctx.role)
            )
        labels = ctx.app.renderer.labels["ROLE"]
        ctx.reply(
            "help_command.txt.j2",
            name=spec.name,
            aliases=spec.aliases,
            info=info[spec.name],
            allowed=ctx.role in spec.roles,
            # two roles (none, stranger) share one label: each label once
            roles=list(dict.fromkeys(labels[r] for r in sorted(r.value for r in spec.roles))),
        )
        return
    commands = [(spec, info[spec.name]) for spec in table.permitted(ctx.role)]
    ctx.reply("help.txt.j2", commands=commands, role=ctx.role.value)
