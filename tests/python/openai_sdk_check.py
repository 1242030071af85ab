"""Drive a running gateway with the official OpenAI Python SDK.

Usage: python3 openai_sdk_check.py <base_url> <key> [mock_model] [upstream_model]

Prints one line per check ("ok <name>") and exits non-zero on the first failure. An
ImportError is fatal on purpose: the Rust test that runs this must not pass without the SDK.
"""

import sys

try:
    import openai
except ImportError as e:  # pragma: no cover - the point is to fail loudly
    print(f"FATAL: cannot import openai ({e}); install it with `pip install openai`", flush=True)
    sys.exit(3)


def main() -> int:
    base_url, key = sys.argv[1], sys.argv[2]
    mock_model = sys.argv[3] if len(sys.argv) > 3 else "mocky"
    upstream_model = sys.argv[4] if len(sys.argv) > 4 else "gpt-4o"
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)
    messages = [{"role": "user", "content": "Say hi"}]

    for model in (mock_model, upstream_model):
        r = client.chat.completions.create(model=model, messages=messages)
        assert r.choices[0].message.content, r
        assert r.usage is not None and r.usage.total_tokens > 0, r.usage
        raw = client.chat.completions.with_raw_response.create(model=model, messages=messages)
        assert raw.headers.get("x-litellm-call-id"), dict(raw.headers)
        print(f"ok plain {model}: {r.choices[0].message.content!r}", flush=True)

        text = ""
        usage = None
        for chunk in client.chat.completions.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True}
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            if chunk.usage is not None:
                usage = chunk.usage
        assert text, "streamed text is empty"
        assert usage is not None and usage.total_tokens > 0, usage
        print(f"ok stream {model}: {text!r}", flush=True)

    # The legacy completions API (fill-in-the-middle), plain and streamed.
    for model in (mock_model, upstream_model):
        c = client.completions.create(model=model, prompt="def add(a, b):", suffix="\n", max_tokens=16)
        assert c.object == "text_completion" and c.choices[0].text, c
        assert c.usage is not None and c.usage.total_tokens > 0, c.usage
        streamed = ""
        for chunk in client.completions.create(model=model, prompt="x = ", stream=True):
            if chunk.choices:
                streamed += chunk.choices[0].text
        assert streamed, "streamed completion text is empty"
        print(f"ok completions {model}: {c.choices[0].text!r} / {streamed!r}", flush=True)

    # The Responses API, translated onto chat completions by the gateway.
    for model in (mock_model, upstream_model):
        r = client.responses.create(model=model, instructions="Be brief.", input="Say hi")
        assert r.status == "completed" and r.output_text, r
        assert r.usage is not None and r.usage.total_tokens > 0, r.usage
        deltas = ""
        for event in client.responses.create(model=model, input="Say hi", stream=True):
            if event.type == "response.output_text.delta":
                deltas += event.delta
        assert deltas, "no output_text.delta events"
        # The SDK's stream helper checks the event sequence as it accumulates it.
        with client.responses.stream(model=model, input="Say hi") as stream:
            final = stream.get_final_response()
        assert final.output_text == deltas, (final.output_text, deltas)
        print(f"ok responses {model}: {r.output_text!r}", flush=True)

    models = [m.id for m in client.models.list()]
    assert mock_model in models and upstream_model in models, models
    print(f"ok models {models}", flush=True)

    bad = openai.OpenAI(base_url=base_url, api_key="sk-definitely-wrong", max_retries=0)
    try:
        bad.chat.completions.create(model=mock_model, messages=messages)
        raise AssertionError("a bad key was accepted")
    except openai.AuthenticationError as e:
        assert e.status_code == 401
        print("ok AuthenticationError", flush=True)

    try:
        client.chat.completions.create(model="no-such-model", messages=messages)
        raise AssertionError("an unknown model was accepted")
    except openai.BadRequestError as e:
        assert e.status_code == 400
        assert "Invalid model name passed in model=no-such-model" in str(e), str(e)
        print("ok BadRequestError", flush=True)

    print("ALL OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
