"""Small helpers shared by the SDK tests."""

import json

PROMPT = "hello there gateway"
TOOL_PROMPT = "What is the weather in Paris?"
TOOL_RESULT = "sunny, 21 C"
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "City name"}},
    "required": ["city"],
}


def mock_prefix(prompt: str) -> str:
    """The first chunk of the mock provider's deterministic answer."""
    excerpt = " ".join(prompt.split()[:8])
    return f'Mock answer to "{excerpt}":'


def tool_answer(*results: str) -> str:
    """What the scripted upstream says once it sees tool results."""
    return "The tool said: " + " | ".join(results)


def args(text: str) -> dict:
    return json.loads(text)
