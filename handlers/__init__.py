"""One module per workflow. Routers are included here, explicitly, in one list:
the only place that knows every workflow (bot/cli.py gives it to BotApp)."""

from . import (
    bulletin,
    console,
    drafts,
    files,
    help,
    quotas,
    registration,
    review,
    standings,
    topics,
)

ROUTERS = [
    help.router,
    registration.router,
    drafts.router,
    files.router,
    topics.router,
    review.router,
    standings.router,
    quotas.router,
    bulletin.router,
    console.router,
]
