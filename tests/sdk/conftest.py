"""Fixtures for the SDK compatibility tests.

They run against an Ailurus HTTP bridge whose URL is in AILURUS_BRIDGE_URL: tests/sdk.rs
starts nats-server + worker + bridge and a scripted tool-calling upstream, then runs
`pytest tests/sdk`. AILURUS_TOOL_MODEL names a model served by that scripted upstream;
without it the tool round-trip tests skip (e.g. against a plain `ailurus up`).
"""

import os

import pytest


@pytest.fixture(scope="session")
def bridge_url() -> str:
    url = os.environ.get("AILURUS_BRIDGE_URL")
    if not url:
        pytest.skip("AILURUS_BRIDGE_URL is not set (run `cargo test --test sdk`)")
    return url.rstrip("/")


@pytest.fixture(scope="session")
def tool_model() -> str:
    model = os.environ.get("AILURUS_TOOL_MODEL")
    if not model:
        pytest.skip("AILURUS_TOOL_MODEL is not set (the scripted upstream runs under `cargo test --test sdk`)")
    return model
