"""Parses a Prometheus text exposition from stdin with prometheus_client's own parser (the
reference implementation, from PyPI) and prints the metric families as JSON:
[{"name", "type", "samples": [{"name", "labels", "value"}]}]. Exits 1 with the parser's
error when the text is not valid. Used by tests/tests/metrics.rs."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    text = sys.stdin.read()
    try:
        families = [
            {
                "name": f.name,
                "type": f.type,
                "samples": [
                    {"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples
                ],
            }
            for f in text_string_to_metric_families(text)
        ]
    except Exception as e:  # the parser raises ValueError and others on bad input
        print("not a valid exposition: {}: {}".format(type(e).__name__, e), file=sys.stderr)
        sys.exit(1)
    json.dump(families, sys.stdout)


if __name__ == "__main__":
    main()
