"""The whole-store scenario and the AddressBook contract, on our stores and fakes."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

from broadcast_domain import Contact
from broadcast_domain.ports import AddressBook
from broadcast_domain.testing.contracts import AddressBookContract, StoreContract
from broadcast_domain.testing.fakes import FakeAddressBook


class TestMemoryStore(StoreContract):
    """memory:// runs the scripted scenario (it does not outlive the process)."""

    persistent = False

    def store_url(self, stack: ExitStack) -> str:
        return "memory://"


class TestSqliteStore(StoreContract):
    """A SQLite file runs the scripted scenario and reads the same after reopening."""

    def store_url(self, stack: ExitStack) -> str:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        return f"sqlite:///{folder / 'broadcasts.db'}"


class TestFakeAddressBook(AddressBookContract):
    """FakeAddressBook keeps the AddressBook contract."""

    def make_address_book(
        self, books: Mapping[str, Sequence[Contact]], stack: ExitStack
    ) -> AddressBook:
        return FakeAddressBook(books)
