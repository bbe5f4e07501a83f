"""One module per workflow. Routers are included here, explicitly, in one list."""

from . import drafts, help, registration, topics

ROUTERS = [help.router, registration.router, drafts.router, topics.router]
