"""The official `openai` SDK against the bridge: Chat Completions and Responses."""

import openai
import pytest

from helpers import PROMPT, TOOL_PROMPT, TOOL_RESULT, WEATHER_SCHEMA, args, mock_prefix, tool_answer

CHAT_TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Current weather for a city", "parameters": WEATHER_SCHEMA},
    }
]
RESPONSES_TOOLS = [
    {"type": "function", "name": "get_weather", "description": "Current weather for a city", "parameters": WEATHER_SCHEMA}
]


def make_client(bridge_url, key):
    return openai.OpenAI(api_key=key, base_url=f"{bridge_url}/v1", max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def client(bridge_url, api_key):
    return make_client(bridge_url, api_key)


# --- Chat Completions ---------------------------------------------------------------------


def test_chat_non_streaming(client):
    r = client.chat.completions.create(model="mock", messages=[{"role": "user", "content": PROMPT}])
    assert r.object == "chat.completion"
    assert r.model == "mock"
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content.startswith(mock_prefix(PROMPT))
    assert choice.finish_reason == "stop"
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_streaming_matches_non_streaming(client):
    messages = [{"role": "user", "content": PROMPT}]
    whole = client.chat.completions.create(model="mock-c5", messages=messages).choices[0].message.content
    stream = client.chat.completions.create(model="mock-c5", messages=messages, stream=True)
    deltas, finishes = [], []
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        for c in chunk.choices:
            if c.delta.content:
                deltas.append(c.delta.content)
            if c.finish_reason:
                finishes.append(c.finish_reason)
    assert len(deltas) == 5
    assert "".join(deltas) == whole
    assert finishes == ["stop"]


def test_chat_stream_include_usage(client):
    stream = client.chat.completions.create(
        model="mock-c3",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens > 0 and last.usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_max_tokens_gives_length(client):
    r = client.chat.completions.create(
        model="mock-c50", messages=[{"role": "user", "content": PROMPT}], max_tokens=8
    )
    assert r.choices[0].finish_reason == "length"


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert "mock" in ids


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 404
    assert "no-such-model" in e.value.message


def test_invalid_key_is_authentication_error(bridge_url):
    with pytest.raises(openai.AuthenticationError) as e:
        make_client(bridge_url, "sk-not-a-token").chat.completions.create(
            model="mock", messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.status_code == 401


def test_no_quota_is_402(bridge_url, broke_key):
    with pytest.raises(openai.APIStatusError) as e:
        make_client(bridge_url, broke_key).chat.completions.create(
            model="mock", messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.status_code == 402
    assert "insufficient quota" in e.value.message


def test_bad_request(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="mock", messages=[])
    assert e.value.status_code == 400


def test_upstream_failure_is_server_error(client):
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="mock-error", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code >= 500


def test_failure_mid_stream_raises(client):
    stream = client.chat.completions.create(
        model="mock-midfail", messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    got = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            got.extend(c.delta.content for c in chunk.choices if c.delta.content)
    assert got, "the chunks before the failure arrive"


def test_chat_tool_round_trip(client, tool_model):
    messages = [{"role": "user", "content": TOOL_PROMPT}]
    r1 = client.chat.completions.create(model=tool_model, messages=messages, tools=CHAT_TOOLS)
    choice = r1.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert args(call.function.arguments) == {"city": "Paris"}
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT})
    r2 = client.chat.completions.create(model=tool_model, messages=messages, tools=CHAT_TOOLS)
    assert r2.choices[0].finish_reason == "stop"
    assert r2.choices[0].message.content == tool_answer(TOOL_RESULT)


def test_chat_tool_round_trip_streaming(client, tool_model):
    messages = [{"role": "user", "content": TOOL_PROMPT}]
    calls: dict[int, dict] = {}
    finish = None
    for chunk in client.chat.completions.create(
        model=tool_model, messages=messages, tools=CHAT_TOOLS, stream=True, stream_options={"include_usage": True}
    ):
        for c in chunk.choices:
            for tc in c.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                slot["id"] = tc.id or slot["id"]
                if tc.function and tc.function.name:
                    slot["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    slot["arguments"] += tc.function.arguments
            finish = c.finish_reason or finish
    assert finish == "tool_calls"
    assert list(calls) == [0]
    call = calls[0]
    assert call["name"] == "get_weather" and args(call["arguments"]) == {"city": "Paris"}
    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}
            ],
        }
    )
    messages.append({"role": "tool", "tool_call_id": call["id"], "content": TOOL_RESULT})
    text = "".join(
        c.delta.content or ""
        for chunk in client.chat.completions.create(model=tool_model, messages=messages, tools=CHAT_TOOLS, stream=True)
        for c in chunk.choices
    )
    assert text == tool_answer(TOOL_RESULT)


# --- Responses ----------------------------------------------------------------------------


def test_responses_non_streaming(client):
    r = client.responses.create(model="mock", input=PROMPT)
    assert r.object == "response"
    assert r.status == "completed"
    assert r.output_text.startswith(mock_prefix(PROMPT))
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0


def test_responses_streaming(client):
    whole = client.responses.create(model="mock-c4", input=PROMPT).output_text
    events = list(client.responses.create(model="mock-c4", input=PROMPT, stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) == 4 and "".join(deltas) == whole
    assert events[-1].response.usage.output_tokens > 0


def test_responses_stream_helper(client):
    with client.responses.stream(model="mock-c3", input=PROMPT, instructions="Be brief.") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.output_text == text
    assert text.startswith(mock_prefix(PROMPT))


def test_responses_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model="no-such-model", input="x")
    assert e.value.status_code == 404


def test_responses_tool_round_trip(client, tool_model):
    """Responses in, OpenAI Chat upstream: the call and its output cross formats both ways."""
    r1 = client.responses.create(model=tool_model, input=TOOL_PROMPT, tools=RESPONSES_TOOLS)
    calls = [o for o in r1.output if o.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather" and args(call.arguments) == {"city": "Paris"}
    inputs = [
        {"role": "user", "content": TOOL_PROMPT},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": TOOL_RESULT},
    ]
    r2 = client.responses.create(model=tool_model, input=inputs, tools=RESPONSES_TOOLS)
    assert r2.output_text == tool_answer(TOOL_RESULT)


def test_responses_tool_round_trip_streaming(client, tool_model):
    with client.responses.stream(model=tool_model, input=TOOL_PROMPT, tools=RESPONSES_TOOLS) as stream:
        arg_deltas = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    calls = [o for o in final.output if o.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert "".join(arg_deltas) == call.arguments
    assert call.name == "get_weather" and args(call.arguments) == {"city": "Paris"}
    inputs = [
        {"role": "user", "content": TOOL_PROMPT},
        call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": TOOL_RESULT},
    ]
    with client.responses.stream(model=tool_model, input=inputs, tools=RESPONSES_TOOLS) as stream:
        final = stream.get_final_response()
    assert final.output_text == tool_answer(TOOL_RESULT)
