"""Shared fixtures: the real broker and store fixtures live in tests/fixtures/ and are loaded here."""

pytest_plugins = ["tests.fixtures.broker", "tests.fixtures.store", "tests.fixtures.devices"]
