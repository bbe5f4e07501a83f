"""One module per workflow. Routers are included here, explicitly, in one list."""

from . import drafts, help, quotas, registration, review, standings, topics

ROUTERS = [
    help.router,
    registration.router,
    drafts.router,
    topics.router,
    review.router,
    standings.router,
    quotas.router,
]
