"""The web app: the results screen, provider webhooks, ``/healthz`` and ``/metrics``.

``create_app(svc, actor_for=..., secret_key=...)`` returns a Starlette (ASGI)
application that a host runs on its own (``broadcast-domain serve``) or mounts
in its web framework. Installed with the ``web`` extra.
"""

from __future__ import annotations

from broadcast_adapters.web.app import SubscriptionConfirmer, create_app

__all__ = ["SubscriptionConfirmer", "create_app"]
