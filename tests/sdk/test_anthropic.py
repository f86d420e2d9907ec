"""The official `anthropic` SDK against the bridge: Messages and count_tokens."""

import anthropic
import pytest

from helpers import PROMPT, TOOL_PROMPT, TOOL_RESULT, WEATHER_SCHEMA, mock_prefix, tool_answer

TOOLS = [{"name": "get_weather", "description": "Current weather for a city", "input_schema": WEATHER_SCHEMA}]


def make_client(bridge_url, key):
    return anthropic.Anthropic(api_key=key, base_url=bridge_url, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def client(bridge_url, api_key):
    return make_client(bridge_url, api_key)


@pytest.fixture(scope="module")
def bearer_client(bridge_url, api_key):
    """Claude Code's other way in: ANTHROPIC_AUTH_TOKEN, sent as `Authorization: Bearer`."""
    return anthropic.Anthropic(auth_token=api_key, base_url=bridge_url, max_retries=0, timeout=30)


def test_non_streaming(client):
    m = client.messages.create(
        model="mock", max_tokens=256, system="You are terse.", messages=[{"role": "user", "content": PROMPT}]
    )
    assert m.type == "message" and m.role == "assistant"
    assert m.model == "mock"
    assert m.id.startswith("msg_")
    assert m.stop_reason == "end_turn"
    (block,) = m.content
    assert block.type == "text" and block.text.startswith(mock_prefix(PROMPT))
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0


def test_bearer_auth(bearer_client):
    m = bearer_client.messages.create(model="mock", max_tokens=64, messages=[{"role": "user", "content": PROMPT}])
    assert m.content[0].text.startswith(mock_prefix(PROMPT))


def test_streaming_matches_non_streaming(client):
    messages = [{"role": "user", "content": PROMPT}]
    whole = client.messages.create(model="mock-c6", max_tokens=256, messages=messages).content[0].text
    with client.messages.stream(model="mock-c6", max_tokens=256, messages=messages) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(deltas) == 6
    assert "".join(deltas) == whole
    assert final.content[0].text == whole
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_raw_stream_event_order(client):
    events = list(
        client.messages.create(
            model="mock-c2", max_tokens=64, messages=[{"role": "user", "content": PROMPT}], stream=True
        )
    )
    types = [e.type for e in events]
    assert types[0] == "message_start"
    assert types[-2:] == ["message_delta", "message_stop"]
    assert "content_block_start" in types and "content_block_stop" in types
    assert events[-2].usage.output_tokens > 0


def test_max_tokens_stop_reason(client):
    m = client.messages.create(model="mock-c50", max_tokens=8, messages=[{"role": "user", "content": PROMPT}])
    assert m.stop_reason == "max_tokens"


def test_count_tokens(client):
    short = client.messages.count_tokens(model="mock", messages=[{"role": "user", "content": "hi"}])
    long = client.messages.count_tokens(
        model="mock",
        system="You are a careful assistant.",
        tools=TOOLS,
        messages=[{"role": "user", "content": PROMPT * 20}],
    )
    assert short.input_tokens > 0
    assert long.input_tokens > short.input_tokens


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert "mock" in ids


def test_unknown_model_is_not_found(client):
    with pytest.raises(anthropic.NotFoundError) as e:
        client.messages.create(model="no-such-model", max_tokens=16, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 404
    assert e.value.body["error"]["type"] == "not_found_error"


def test_invalid_key_is_authentication_error(bridge_url):
    with pytest.raises(anthropic.AuthenticationError) as e:
        make_client(bridge_url, "sk-not-a-token").messages.create(
            model="mock", max_tokens=16, messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.status_code == 401
    assert e.value.body["error"]["type"] == "authentication_error"


def test_no_quota_is_402(bridge_url, broke_key):
    with pytest.raises(anthropic.APIStatusError) as e:
        make_client(bridge_url, broke_key).messages.create(
            model="mock", max_tokens=16, messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.status_code == 402


def test_bad_request(client):
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model="mock", max_tokens=16, messages=[])
    assert e.value.status_code == 400
    assert e.value.body["error"]["type"] == "invalid_request_error"


def test_upstream_failure_is_server_error(client):
    with pytest.raises(anthropic.APIStatusError) as e:
        client.messages.create(model="mock-error", max_tokens=16, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code >= 500


def test_failure_mid_stream_raises(client):
    got = []
    with pytest.raises(anthropic.APIStatusError):
        with client.messages.stream(
            model="mock-midfail", max_tokens=256, messages=[{"role": "user", "content": PROMPT}]
        ) as stream:
            for text in stream.text_stream:
                got.append(text)
    assert got, "the text before the failure arrives"


def test_tool_round_trip(client, tool_model):
    """Anthropic Messages in, OpenAI Chat upstream: tool_use and tool_result cross formats."""
    messages = [{"role": "user", "content": TOOL_PROMPT}]
    m1 = client.messages.create(model=tool_model, max_tokens=256, tools=TOOLS, messages=messages)
    assert m1.stop_reason == "tool_use"
    uses = [b for b in m1.content if b.type == "tool_use"]
    assert len(uses) == 1
    use = uses[0]
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    assert use.id
    messages += [
        {"role": "assistant", "content": m1.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": TOOL_RESULT}]},
    ]
    m2 = client.messages.create(model=tool_model, max_tokens=256, tools=TOOLS, messages=messages)
    assert m2.stop_reason == "end_turn"
    assert m2.content[0].type == "text" and m2.content[0].text == tool_answer(TOOL_RESULT)


def test_tool_round_trip_streaming(client, tool_model):
    messages = [{"role": "user", "content": TOOL_PROMPT}]
    with client.messages.stream(model=tool_model, max_tokens=256, tools=TOOLS, messages=messages) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    (use,) = [b for b in final.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    messages += [
        {"role": "assistant", "content": final.content},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": use.id, "content": [{"type": "text", "text": TOOL_RESULT}]}
            ],
        },
    ]
    with client.messages.stream(model=tool_model, max_tokens=256, tools=TOOLS, messages=messages) as stream:
        text = "".join(stream.text_stream)
    assert text == tool_answer(TOOL_RESULT)
