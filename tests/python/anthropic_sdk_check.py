"""Drive a running gateway's /anthropic pass-through with the official Anthropic Python SDK.

Usage: python3 anthropic_sdk_check.py <base_url> <key> <model>

Prints one line per check ("ok <name>") and exits non-zero on the first failure. An
ImportError is fatal on purpose: the Rust test that runs this must not pass without the SDK.
"""

import sys

try:
    import anthropic
except ImportError as e:  # pragma: no cover - the point is to fail loudly
    print(f"FATAL: cannot import anthropic ({e}); install it with `pip install anthropic`", flush=True)
    sys.exit(3)


def main() -> int:
    base_url, key, model = sys.argv[1], sys.argv[2], sys.argv[3]
    client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=30)
    messages = [{"role": "user", "content": "Say hi"}]

    m = client.messages.create(model=model, max_tokens=64, messages=messages)
    assert m.content and m.content[0].type == "text" and m.content[0].text, m
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0, m.usage
    print(f"ok plain: {m.content[0].text!r} {m.usage.input_tokens}/{m.usage.output_tokens}", flush=True)

    with client.messages.stream(model=model, max_tokens=64, messages=messages) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and text == final.content[0].text, (text, final)
    assert final.usage.output_tokens > 0, final.usage
    print(f"ok stream: {text!r} {final.usage.input_tokens}/{final.usage.output_tokens}", flush=True)

    wrong = anthropic.Anthropic(base_url=base_url, api_key="sk-not-a-key-of-this-gateway", max_retries=0)
    try:
        wrong.messages.create(model=model, max_tokens=8, messages=messages)
    except anthropic.AuthenticationError:
        print("ok AuthenticationError", flush=True)
    else:
        raise AssertionError("a wrong key was accepted")

    print("ALL OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
