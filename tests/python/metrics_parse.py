"""Parse a /metrics scrape with the Prometheus Python client's OpenMetrics parser (strict:
it rejects malformed lines, bad escaping, unordered buckets and a missing `# EOF`), and print
what it read as JSON for the Rust test to check: one object per family with its type and
samples. scripts/test.sh installs `prometheus_client`."""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main() -> None:
    text = sys.stdin.read()
    families = []
    for family in text_string_to_metric_families(text):
        families.append(
            {
                "name": family.name,
                "type": family.type,
                "samples": [
                    # As text: JSON has no infinity (an unbudgeted key's remaining budget).
                    {"name": s.name, "labels": s.labels, "value": repr(float(s.value))}
                    for s in family.samples
                ],
            }
        )
    json.dump(families, sys.stdout)


if __name__ == "__main__":
    main()
