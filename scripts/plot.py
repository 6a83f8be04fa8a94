"""Plots bench results written by scripts/bench.sh into docs/img/."""
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "bench-results")
img = pathlib.Path(__file__).resolve().parent.parent / "docs" / "img"
img.mkdir(parents=True, exist_ok=True)


def rows(name):
    return [json.loads(line) for line in (out / name).read_text().splitlines() if line.strip()]


dm = rows("dm.jsonl")
fig, ax = plt.subplots(figsize=(7, 4))
x = [r["offered_rate"] for r in dm]
for key, label in [("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")]:
    ax.plot(x, [r["latency_ms"][key] for r in dm], marker="o", label=label)
ax.set_yscale("log")
ax.set_xlabel("offered load (messages/s, durable 1:1)")
ax.set_ylabel("send-to-receipt latency (ms)")
ax2 = ax.twinx()
ax2.plot(x, [r["delivered_per_sec"] for r in dm], color="grey", linestyle="--", label="delivered/s")
ax2.set_ylabel("delivered messages/s")
ax.legend(loc="upper left")
ax.set_title("natter dm: latency against offered load")
fig.tight_layout()
fig.savefig(img / "latency-vs-load.png", dpi=110)

conn = rows("connect.jsonl")
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot([r["connected"] for r in conn], [r["server_rss_bytes"] / 2**20 for r in conn], marker="o")
ax.set_xlabel("idle authenticated connections")
ax.set_ylabel("server RSS (MiB)")
ax.set_title("natter connect: memory against connections")
fig.tight_layout()
fig.savefig(img / "memory-vs-connections.png", dpi=110)
print(f"wrote {img}/latency-vs-load.png and {img}/memory-vs-connections.png")
