"""Shipped test support for hosts and for our own suite (install the ``testing`` extra).

- ``strategies``: hypothesis strategies for contacts, reports, events and histories;
- ``clock``: a controllable clock;
- ``fakes``: in-memory implementations of every port;
- ``contracts``: pytest base classes a host subclasses to check its own adapters;
- ``machine``: the rule-based state machine that checks SPEC section 2 against a store.

Nothing in the core imports this package.
"""
