#!/usr/bin/env python3
"""Renders bench/raw/* (from bench/run.sh) into a Markdown results file."""
import json
import re
import statistics
import sys
import datetime
import pathlib

raw, out, params = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
P = dict(kv.split("=") for kv in params.split())


def text(name, ext="out"):
    f = raw / f"{name}.{ext}"
    return f.read_text() if f.exists() else ""


def js(name):
    try:
        return json.loads(text(name))
    except ValueError:
        return None


def tm(name):
    """(user, sys, elapsed, maxrss_kb) from /usr/bin/time, or None."""
    try:
        u, s, e, m = text(name, "time").split()[-4:]
        return float(u), float(s), float(e), int(m)
    except ValueError:
        return None


def wrk_requests(t):
    m = re.search(r"(\d+) requests in", t)
    return int(m.group(1)) if m else None


def wrk_rps(t):
    m = re.search(r"Requests/sec:\s+([\d.]+)", t)
    return float(m.group(1)) if m else None


def wrk_pct(t, p):
    m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", t, re.M)
    if not m:
        return None
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


def oha_requests(d):
    return sum(d.get("statusCodeDistribution", {}).values()) if d else None


def oha_pct(d, p):
    try:
        return d["latencyPercentiles"][p] * 1e3
    except (KeyError, TypeError):
        return None


def f(x, fmt="{:.0f}"):
    return "n/a" if x is None else fmt.format(x)


rows = []
# 1. closed loop
rounds = int(P["rounds"])
res = {"meshdrill": [], "wrk": [], "oha": []}
cpu = {"meshdrill": [], "wrk": [], "oha": []}
for r in range(1, rounds + 1):
    for tool in res:
        name = f"closed-{tool}-{r}"
        if tool == "meshdrill":
            d = js(name)
            rps, n = (d["rps"], d["requests"]) if d else (None, None)
        elif tool == "wrk":
            t = text(name)
            rps, n = wrk_rps(t), wrk_requests(t)
        else:
            d = js(name)
            rps = d["summary"]["requestsPerSec"] if d else None
            n = oha_requests(d)
        res[tool].append(rps)
        t = tm(name)
        cpu[tool].append((t[0] + t[1]) / n * 1e6 if t and n else None)

lines = []
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
lines.append(f"Run {now}; parameters: {params}\n")
lines.append(f"### Closed loop, {P['conns']} connections, {P['dur']} s per round (req/s; median of {rounds} interleaved rounds)\n")
lines.append("| tool | " + " | ".join(f"round {i}" for i in range(1, rounds + 1)) + " | median | ratio to wrk | CPU µs/request (median) |")
lines.append("|---|" + "---|" * (rounds + 3))
med = {}
for tool in res:
    vals = [v for v in res[tool] if v is not None]
    med[tool] = statistics.median(vals) if vals else None
for tool in res:
    c = [v for v in cpu[tool] if v is not None]
    ratio = med[tool] / med["wrk"] if med[tool] and med["wrk"] else None
    lines.append(f"| {tool} | " + " | ".join(f(v) for v in res[tool]) + f" | {f(med[tool])} | {f(ratio, '{:.2f}')} | {f(statistics.median(c) if c else None, '{:.1f}')} |")

# 2. RSS
lines.append(f"\n### Peak RSS (MiB), closed loop, {P['conns']} connections\n")
lines.append(f"| tool | {P['dur']} s run | {P['rss_long']} s run | requests in the long run |")
lines.append("|---|---|---|---|")
for tool in ["meshdrill", "oha", "wrk"]:
    s, l = tm(f"rss-{tool}-short"), tm(f"rss-{tool}-long")
    if tool == "meshdrill":
        d = js("rss-meshdrill-long"); n = d["requests"] if d else None
    elif tool == "oha":
        n = oha_requests(js("rss-oha-long"))
    else:
        n = wrk_requests(text("rss-wrk-long"))
    lines.append(f"| {tool} | {f(s[3] / 1024 if s else None, '{:.1f}')} | {f(l[3] / 1024 if l else None, '{:.1f}')} | {f(n)} |")

# 3. fixed rate
lines.append(f"\n### Fixed rate {P['rate']} req/s for {P['rate_dur']} s, {P['conns']} connections\n")
lines.append("| tool | requests | due | achieved req/s | error vs target | CPU-s per s | p50 ms | p99 ms |")
lines.append("|---|---|---|---|---|---|---|---|")
target = float(P["rate"])
d, t = js("rate-meshdrill"), tm("rate-meshdrill")
if d:
    lines.append(
        f"| meshdrill | {d['requests']} | {d.get('scheduled')} | {d['rps']:.1f} | {100 * (d['rps'] - target) / target:+.3f}% "
        f"(sent/due {100 * (d['requests'] - d['scheduled']) / d['scheduled']:+.3f}%) | {f((t[0] + t[1]) / t[2] if t else None, '{:.2f}')} "
        f"| {d['latency_ms']['p50']} | {d['latency_ms']['p99']} |")
d, t = js("rate-oha"), tm("rate-oha")
if d:
    rps = d["summary"]["requestsPerSec"]
    lines.append(
        f"| oha (--latency-correction) | {oha_requests(d)} | | {rps:.1f} | {100 * (rps - target) / target:+.3f}% | "
        f"{f((t[0] + t[1]) / t[2] if t else None, '{:.2f}')} | {f(oha_pct(d, 'p50'), '{:.3f}')} | {f(oha_pct(d, 'p99'), '{:.3f}')} |")

# 4. stall
lines.append(f"\n### Stall server (freezes 1 s of every 5 s), {P['stall_rate']} req/s for {P['stall_dur']} s (latency, ms; theory p90 500, p99 950)\n")
lines.append("| run | p50 | p90 | p99 | p99.9 | max | p90 / 500 | p99 / 950 |")
lines.append("|---|---|---|---|---|---|---|---|")
for name, label in [("stall-meshdrill-open", "meshdrill --rate (latency_ms, from intended start)"),
                    ("stall-meshdrill-closed", "meshdrill closed loop")]:
    d = js(name)
    if d:
        L = d["latency_ms"]
        lines.append(f"| {label} | {L['p50']} | {L['p90']} | {L['p99']} | {L['p999']} | {L['max']} | "
                     f"{f(L['p90'] / 500 if L['p90'] is not None else None, '{:.3f}')} | {f(L['p99'] / 950 if L['p99'] is not None else None, '{:.3f}')} |")
        if "service_time_ms" in d:
            S = d["service_time_ms"]
            lines.append(f"| meshdrill --rate (service_time_ms, from actual send) | {S['p50']} | {S['p90']} | {S['p99']} | {S['p999']} | {S['max']} | | |")
d = js("stall-oha-corrected")
if d:
    p = [oha_pct(d, k) for k in ("p50", "p90", "p99", "p99.9")]
    mx = d["summary"]["slowest"] * 1e3 if d.get("summary", {}).get("slowest") is not None else None
    lines.append(f"| oha -q --latency-correction | " + " | ".join(f(x, '{:.3f}') for x in p) + f" | {f(mx, '{:.3f}')} | "
                 f"{f(p[1] / 500 if p[1] else None, '{:.3f}')} | {f(p[2] / 950 if p[2] else None, '{:.3f}')} |")
t = text("stall-wrk-closed")
if t:
    p = [wrk_pct(t, k) for k in (50, 90, 99)]
    lines.append(f"| wrk closed loop | {f(p[0], '{:.3f}')} | {f(p[1], '{:.3f}')} | {f(p[2], '{:.3f}')} | | | | |")

out.write_text("\n".join(lines) + "\n")
