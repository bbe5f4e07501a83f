"""One module per workflow. Routers are included here, explicitly, in one list."""

from . import drafts, help, registration, review, standings, topics

ROUTERS = [
    help.router,
    registration.router,
    drafts.router,
    topics.router,
    review.router,
    standings.router,
]
