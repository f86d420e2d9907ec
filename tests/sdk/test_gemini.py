"""The official `google-genai` SDK against the bridge, under /v1beta (the default) and /v1."""

import pytest
from google import genai
from google.genai import errors, types

from helpers import PROMPT, TOOL_PROMPT, TOOL_RESULT, WEATHER_SCHEMA, mock_prefix, tool_answer

WEATHER = types.FunctionDeclaration(
    name="get_weather", description="Current weather for a city", parameters_json_schema=WEATHER_SCHEMA
)
MANUAL_TOOLS = types.GenerateContentConfig(
    tools=[types.Tool(function_declarations=[WEATHER])],
    automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
)


def make_client(bridge_url, key, version="v1beta"):
    return genai.Client(
        api_key=key, http_options=types.HttpOptions(base_url=bridge_url, api_version=version, timeout=30_000)
    )


@pytest.fixture(scope="module", params=["v1beta", "v1"])
def client(request, bridge_url, api_key):
    return make_client(bridge_url, api_key, request.param)


def test_generate_content(client):
    r = client.models.generate_content(model="mock", contents=PROMPT)
    assert r.text.startswith(mock_prefix(PROMPT))
    (cand,) = r.candidates
    assert cand.finish_reason == types.FinishReason.STOP
    assert cand.content.role == "model"
    assert r.usage_metadata.prompt_token_count > 0
    assert r.usage_metadata.candidates_token_count > 0


def test_generate_content_with_config(client):
    r = client.models.generate_content(
        model="mock-c50",
        contents=[types.Content(role="user", parts=[types.Part(text=PROMPT)])],
        config=types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=8, temperature=0.2),
    )
    assert r.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


def test_streaming_matches_non_streaming(client):
    whole = client.models.generate_content(model="mock-c5", contents=PROMPT).text
    chunks = list(client.models.generate_content_stream(model="mock-c5", contents=PROMPT))
    text = "".join(c.text or "" for c in chunks)
    assert text == whole
    assert sum(1 for c in chunks if c.text) == 5
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count > 0


def test_count_tokens(client):
    short = client.models.count_tokens(model="mock", contents="hi")
    long = client.models.count_tokens(model="mock", contents=PROMPT * 20)
    assert short.total_tokens > 0
    assert long.total_tokens > short.total_tokens


def test_models_list(client):
    names = [m.name for m in client.models.list()]
    assert "models/mock" in names


def test_unknown_model_is_not_found(client):
    with pytest.raises(errors.ClientError) as e:
        client.models.generate_content(model="no-such-model", contents="x")
    assert e.value.code == 404
    assert e.value.status == "NOT_FOUND"


def test_invalid_key_is_401(bridge_url):
    c = make_client(bridge_url, "not-a-token")
    with pytest.raises(errors.ClientError) as e:
        c.models.generate_content(model="mock", contents="x")
    assert e.value.code == 401


def test_no_quota_is_402(bridge_url, broke_key):
    c = make_client(bridge_url, broke_key)
    with pytest.raises(errors.ClientError) as e:
        c.models.generate_content(model="mock", contents="x")
    assert e.value.code == 402


def test_bad_request(client):
    with pytest.raises(errors.ClientError) as e:
        client.models.generate_content(
            model="mock", contents=[types.Content(role="wizard", parts=[types.Part(text="x")])]
        )
    assert e.value.code == 400
    assert e.value.status == "INVALID_ARGUMENT"


def test_upstream_failure_is_server_error(client):
    with pytest.raises(errors.ServerError) as e:
        client.models.generate_content(model="mock-error", contents="x")
    assert e.value.code >= 500


def test_failure_mid_stream_raises(client):
    got = []
    with pytest.raises(errors.APIError):
        for chunk in client.models.generate_content_stream(model="mock-midfail", contents=PROMPT):
            got.append(chunk.text)
    assert got, "the text before the failure arrives"


def test_tool_round_trip(client, tool_model):
    """Gemini in, OpenAI Chat upstream: functionCall / functionResponse cross formats."""
    user = types.Content(role="user", parts=[types.Part(text=TOOL_PROMPT)])
    r1 = client.models.generate_content(model=tool_model, contents=[user], config=MANUAL_TOOLS)
    calls = r1.function_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].name == "get_weather" and calls[0].args == {"city": "Paris"}
    reply = types.Content(
        role="user",
        parts=[
            types.Part.from_function_response(name="get_weather", response={"result": TOOL_RESULT}),
        ],
    )
    # The function response carries the call's id when the model gave one.
    if calls[0].id:
        reply.parts[0].function_response.id = calls[0].id
    r2 = client.models.generate_content(
        model=tool_model, contents=[user, r1.candidates[0].content, reply], config=MANUAL_TOOLS
    )
    assert r2.function_calls is None
    assert TOOL_RESULT in r2.text
    assert r2.text.startswith("The tool said: ")


def test_tool_round_trip_streaming(client, tool_model):
    user = types.Content(role="user", parts=[types.Part(text=TOOL_PROMPT)])
    chunks = list(client.models.generate_content_stream(model=tool_model, contents=[user], config=MANUAL_TOOLS))
    calls = [fc for c in chunks for fc in (c.function_calls or [])]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather" and call.args == {"city": "Paris"}
    model_turn = types.Content(role="model", parts=[types.Part(function_call=call)])
    reply = types.Content(
        role="user",
        parts=[types.Part(function_response=types.FunctionResponse(id=call.id, name=call.name, response={"output": TOOL_RESULT}))],
    )
    chunks = list(
        client.models.generate_content_stream(model=tool_model, contents=[user, model_turn, reply], config=MANUAL_TOOLS)
    )
    text = "".join(c.text or "" for c in chunks)
    assert TOOL_RESULT in text


def test_automatic_function_calling(client, tool_model):
    """The SDK calls a Python function itself and sends its result back."""
    seen = []

    def get_weather(city: str) -> str:
        """Current weather for a city."""
        seen.append(city)
        return TOOL_RESULT

    r = client.models.generate_content(
        model=tool_model, contents=TOOL_PROMPT, config=types.GenerateContentConfig(tools=[get_weather])
    )
    assert seen == ["Paris"]
    assert TOOL_RESULT in r.text
    assert r.text.startswith("The tool said: ")
    history = r.automatic_function_calling_history
    assert history and any(p.function_response for c in history for p in (c.parts or []))

