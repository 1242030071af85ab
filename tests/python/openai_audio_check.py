"""Drive a running gateway's audio endpoints with the official OpenAI Python SDK.

Usage: python3 openai_audio_check.py <base_url> <key> <transcription_model> <speech_model>

Prints one line per check ("ok <name>") and exits non-zero on the first failure. An
ImportError is fatal on purpose: the Rust test that runs this must not pass without the SDK.
"""

import sys

try:
    import openai
except ImportError as e:  # pragma: no cover - the point is to fail loudly
    print(f"FATAL: cannot import openai ({e}); install it with `pip install openai`", flush=True)
    sys.exit(3)

AUDIO = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00" + bytes(range(64))


def main() -> int:
    base_url, key, stt, tts = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)

    t = client.audio.transcriptions.create(model=stt, file=("hello.wav", AUDIO, "audio/wav"))
    assert t.text == "hello from the recording", t
    print(f"ok transcription: {t.text!r}", flush=True)

    v = client.audio.transcriptions.create(
        model=stt, file=("hello.wav", AUDIO, "audio/wav"), response_format="verbose_json"
    )
    assert v.duration == 30.0 and v.text == "hello from the recording", v
    print(f"ok verbose_json: {v.duration}s", flush=True)

    with client.audio.speech.with_streaming_response.create(
        model=tts, voice="alloy", input="Hello there"
    ) as r:
        assert r.headers.get("content-type", "").startswith("audio/"), dict(r.headers)
        data = b"".join(r.iter_bytes())
    assert data.startswith(b"ID3") and data.count(b"Hello there") == 3, data
    print(f"ok speech: {len(data)} bytes", flush=True)

    wrong = openai.OpenAI(base_url=base_url, api_key="sk-not-a-key-of-this-gateway", max_retries=0)
    try:
        wrong.audio.speech.create(model=tts, voice="alloy", input="x")
    except openai.AuthenticationError:
        print("ok AuthenticationError", flush=True)
    else:
        raise AssertionError("a wrong key was accepted")

    print("ALL OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
