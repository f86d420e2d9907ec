"""Fixtures for the SDK compatibility tests.

They run against an Ailurus HTTP bridge whose URL is in AILURUS_BRIDGE_URL: tests/sdk.rs
starts nats-server + worker + bridge and a scripted tool-calling upstream, then runs
`pytest tests/sdk`. Other variables it sets:

- AILURUS_API_KEY: a valid token with quota (any value works against a worker in open mode);
- AILURUS_BROKE_API_KEY: a valid token whose user has no quota (402 tests skip without it);
- AILURUS_TOOL_MODEL: a model served by the scripted upstream (tool tests skip without it).
"""

import os

import pytest


def _env(name: str, why: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is not set ({why}; run `cargo test --test sdk`)")
    return value


@pytest.fixture(scope="session")
def bridge_url() -> str:
    return _env("AILURUS_BRIDGE_URL", "no bridge to test").rstrip("/")


@pytest.fixture(scope="session")
def api_key() -> str:
    return os.environ.get("AILURUS_API_KEY") or "sk-ailurus-sdk-test"


@pytest.fixture(scope="session")
def broke_key() -> str:
    return _env("AILURUS_BROKE_API_KEY", "no token without quota")


@pytest.fixture(scope="session")
def tool_model() -> str:
    return _env("AILURUS_TOOL_MODEL", "the scripted tool-calling upstream runs under cargo test")
