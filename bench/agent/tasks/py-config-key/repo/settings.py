import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def retries():
    with open(os.path.join(HERE, "config.json")) as f:
        config = json.load(f)
    return config.get("retry_count", 1)
