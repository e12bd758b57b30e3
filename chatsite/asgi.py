"""ASGI entry point: HTTP through Django, WebSockets through Channels.

`daphne chatsite.asgi:application` serves both, static files included (whitenoise).
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
# Build the Django app first: it sets up the app registry the routing imports need.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from chat.providers import load_provider  # noqa: E402
from chat.replies import shutdown  # noqa: E402
from chat.replies.background import ProcessTasksMiddleware  # noqa: E402
from chat.ws.routing import websocket_urlpatterns  # noqa: E402
from chatsite.daphne_bodies import leave_form_bodies_unparsed  # noqa: E402
from chatsite.static_asgi import StaticFilesApp  # noqa: E402

# Build the channel layer now, not on the first stop: importing its Redis backend takes a
# few hundred milliseconds that a Stop request must not spend.
get_channel_layer()
# On SIGTERM, save every streaming reply before the process exits.
shutdown.install()
# Import the model provider's SDK now, not inside the first reply.
load_provider()
# Daphne's Twisted must not parse upload bodies on the event loop (chatsite/daphne_bodies.py).
leave_form_bodies_unparsed()

application = ProcessTasksMiddleware(
    ProtocolTypeRouter(
        {
            "http": StaticFilesApp(django_asgi_app),
            "websocket": AllowedHostsOriginValidator(
                AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
            ),
        }
    )
)
