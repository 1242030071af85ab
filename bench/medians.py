"""The bench scripts' shared reading of wrk RESULT lines: every point is measured in several
rounds, and the round with the median req/s stands for it (its latencies come from the same
round). Lines look like `<path> <conns> RESULT rps=... p50_us=... p99_us=... errors=...`."""
import re


def medians(path):
    """{(path, conns): {rps, p50_us, p99_us, errors, requests}}, and the number of rounds."""
    runs = {}
    for line in open(path):
        name, conns, rest = line.split(" ", 2)
        kv = dict(re.findall(r"(\w+)=(-?[\d.]+)", rest))
        runs.setdefault((name, int(conns)), []).append({k: float(v) for k, v in kv.items()})
    rows = {k: sorted(v, key=lambda r: r["rps"])[len(v) // 2] for k, v in runs.items()}
    return rows, max(len(v) for v in runs.values())


def print_table(rows):
    print("| path | conns | req/s | p50 µs | p99 µs | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for (name, c), r in rows.items():
        print(f"| {name} | {c} | {r['rps']:.0f} | {r['p50_us']:.0f} | {r['p99_us']:.0f} | {r['errors']:.0f} |")
