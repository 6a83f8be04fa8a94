"""HTTP/2 load for scripts/rest/run.sh, as curl config files (curl
multiplexes the requests over one h2c connection), and their report.

  h2.py send TOKENS PORT ROUND    60,000 sends, 64 streams at once
  h2.py login TOKENS PORT ROUND   20,000 password logins of user0..199, 50 at once
  h2.py report FILE T0 T1 C0 C1 TICK LABEL
"""
import json
import sys


def config(what, tokens, port, rnd):
    pairs = [l.split() for l in open(tokens)]
    # At most the server's 64 streams per connection (curl 7.88 stalls the
    # streams past a peer's limit until a timer fires).
    streams = 64 if what == "send" else 50
    print(f"--http2-prior-knowledge\n--parallel\n--parallel-max {streams}\n--silent")
    n = 60000 if what == "send" else 20000
    for i in range(n):
        if what == "send":
            token, peer = pairs[i % len(pairs)]
            path = "/v1/messages"
            body = {"client_msg_id": f"h{rnd}-{i}", "to_user_id": int(peer),
                    "body": {"kind": "TEXT", "content": "x" * 100}}
            auth = f'header = "authorization: Bearer {token}"\n'
        else:
            path = "/v1/login"
            body = {"username": f"user{i % 200}", "password": "correct horse",
                    "device_id": f"h2-{i % 200}"}
            auth = ""
        data = json.dumps(body, separators=(",", ":")).replace("\\", "\\\\").replace('"', '\\"')
        print(f'url = "http://127.0.0.1:{port}{path}"')
        print(f'{auth}header = "content-type: application/json"')
        print(f'data = "{data}"')
        print('output = "/dev/null"\nwrite-out = "%{http_code} %{time_total}\\n"')
        # `next` only between transfers: after the last one curl would
        # start one without a URL and abort those still running.
        if i + 1 < n:
            print("next")


def report(f, t0, t1, c0, c1, tick, label):
    rows = [l.split() for l in open(f) if l.strip()]
    ok = sorted(float(t) for c, t in rows if c.startswith("2"))
    n = len(rows)
    p99 = ok[max(int(len(ok) * 0.99) - 1, 0)] * 1000 if ok else float("nan")
    wall = float(t1) - float(t0)
    cpu = (int(c1) - int(c0)) / int(tick) * 1e6 / max(n, 1)
    print(f"{label}: {round(n / wall)} req/s ({len(ok)}/{n} 2xx), {cpu:.1f} us CPU/request, {p99:.2f}ms p99")


if sys.argv[1] == "report":
    report(*sys.argv[2:9])
else:
    config(sys.argv[1], *sys.argv[2:5])
