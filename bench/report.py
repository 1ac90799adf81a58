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


def env(name):
    """The quiet-machine record of a closed-loop round (see `measured` in run.sh), or {}."""
    try:
        return {k: float(v) for k, v in (kv.split("=") for kv in text(name, "env").split())}
    except ValueError:
        return {}


def spread(vals, fmt="{:.0f}"):
    v = sorted(x for x in vals if x is not None)
    if not v:
        return "n/a"
    return f"{fmt.format(v[0])} / **{fmt.format(statistics.median(v))}** / {fmt.format(v[-1])}"


def med(vals):
    v = [x for x in vals if x is not None]
    return statistics.median(v) if v else None


# 1. closed loop
rounds = int(P["rounds"])
quiet_idle = float(P.get("quiet_idle", 90))
TOOLS = ["meshdrill", "wrk", "oha"]
R = {t: [] for t in TOOLS}  # per round: dict(rps, n, gen_cpu_s, srv_us, idle, load1, others, busy)
for r in range(1, rounds + 1):
    for tool in TOOLS:
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
        t, e = tm(name), env(name)
        gen = t[0] + t[1] if t else None
        hz = e.get("hz", 100.0)
        srv = e["nginx_ticks"] / hz if "nginx_ticks" in e else None
        others = None
        if t and srv is not None and "busy_ticks" in e and t[2] > 0:
            others = max(0.0, (e["busy_ticks"] / hz - gen - srv) / t[2])
        idle = e.get("idle_pct")
        busy = (idle is not None and idle < quiet_idle) or (others is not None and others > 0.1)
        R[tool].append(dict(
            rps=rps, n=n, gen=gen,
            gen_us=gen / n * 1e6 if gen is not None and n else None,
            per_cpu_s=n / gen if gen and n else None,
            srv_us=srv / n * 1e6 if srv is not None and n else None,
            idle=idle, load1=e.get("load1"), others=others, busy=busy))


def ratios(tool, key, rounds_idx):
    out = []
    for i in rounds_idx:
        a, b = R[tool][i][key], R["wrk"][i][key]
        out.append(a / b if a and b else None)
    return out


lines = []
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
lines.append(f"Run {now}; parameters: {params}\n")
all_idx = list(range(rounds))
quiet_idx = [i for i in all_idx if not any(R[t][i]["busy"] for t in TOOLS)]


def summary(title, idx):
    lines.append(f"\n#### {title}\n")
    lines.append("| tool | req/s min / **median** / max | ratio to wrk, same round | requests per generator CPU-s | ratio to wrk per CPU-s, same round | generator CPU µs/request | nginx CPU µs/request |")
    lines.append("|---|---|---|---|---|---|---|")
    for tool in TOOLS:
        rows = [R[tool][i] for i in idx]
        lines.append(
            f"| {tool} | {spread([x['rps'] for x in rows])} | {spread(ratios(tool, 'rps', idx), '{:.2f}')} "
            f"| {spread([x['per_cpu_s'] for x in rows])} | {spread(ratios(tool, 'per_cpu_s', idx), '{:.2f}')} "
            f"| {spread([x['gen_us'] for x in rows], '{:.1f}')} | {spread([x['srv_us'] for x in rows], '{:.2f}')} |")


lines.append(f"### Closed loop, {P['conns']} connections, {P['dur']} s per round, {rounds} interleaved rounds\n")
lines.append("Spread cells read min / **median** / max over the rounds; ratios are taken within a round "
             "(tool ÷ wrk of the same round) and then summarised. Generator CPU is user + sys of the tool "
             "(`/usr/bin/time`), nginx CPU is its worker's utime + stime (`/proc/PID/stat`) over the round.")
summary(f"All {rounds} rounds", all_idx)
if quiet_idx and len(quiet_idx) < rounds:
    summary(f"Quiet rounds only ({len(quiet_idx)} of {rounds})", quiet_idx)
elif not quiet_idx:
    lines.append("\n**No round was quiet**: every one ran on a busy machine (see below); read the ratios, not the rates.")
lines.append(f"\n#### Per round (busy = idle < {quiet_idle:.0f} % in the second before the run, or others used > 0.1 CPU during it)\n")
lines.append("| round | tool | req/s | generator CPU µs/req | nginx CPU µs/req | idle before | load avg (1 min) | others' CPU during (cores) | |")
lines.append("|---|---|---|---|---|---|---|---|---|")
for i in all_idx:
    for tool in TOOLS:
        x = R[tool][i]
        lines.append(f"| {i + 1} | {tool} | {f(x['rps'])} | {f(x['gen_us'], '{:.1f}')} | {f(x['srv_us'], '{:.2f}')} "
                     f"| {f(x['idle'], '{:.0f}%')} | {f(x['load1'], '{:.2f}')} | {f(x['others'], '{:.2f}')} | {'**busy**' if x['busy'] else 'quiet'} |")

# 1b. peak RSS vs connections
rss_conns = [int(c) for c in P.get("rss_conns", "").split(",") if c]
if rss_conns:
    lines.append(f"\n### Peak RSS (MiB) vs connections, closed loop, {P['rss_dur']} s (`/usr/bin/time -f %M` on the tool itself)\n")
    lines.append("| tool | " + " | ".join(f"-c {c}" for c in rss_conns) + " |")
    lines.append("|---|" + "---|" * len(rss_conns))
    for tool in TOOLS:
        cells = []
        for c in rss_conns:
            t = tm(f"rssc-{tool}-{c}")
            if tool == "meshdrill":
                d = js(f"rssc-{tool}-{c}")
                n = d["requests"] if d else None
            elif tool == "wrk":
                n = wrk_requests(text(f"rssc-{tool}-{c}"))
            else:
                n = oha_requests(js(f"rssc-{tool}-{c}"))
            req = f" ({n / 1e3:.0f}k req)" if n else " (no result)"
            cells.append(f"{t[3] / 1024:.1f}{req}" if t else "n/a")
        lines.append(f"| {tool} | " + " | ".join(cells) + " |")

# 1c. two local workers
wr = int(P.get("worker_rounds", 0))
w1 = [js(f"workers-1-{r}") for r in range(1, wr + 1)]
w2 = [js(f"workers-2-{r}") for r in range(1, wr + 1)]
if any(w2):
    lines.append(f"\n### Two local workers vs one, closed loop, {P['conns']} connections, {P['dur']} s, {wr} interleaved rounds (not pinned)\n")
    lines.append("| run | req/s min / **median** / max | ratio to one worker, same round |")
    lines.append("|---|---|---|")
    r1 = [d["rps"] if d else None for d in w1]
    r2 = [d["rps"] if d else None for d in w2]
    lines.append(f"| meshdrill (one process) | {spread(r1)} | 1.00 |")
    lines.append(f"| meshdrill --workers 2 | {spread(r2)} | {spread([b / a if a and b else None for a, b in zip(r1, r2)], '{:.2f}')} |")
elif wr:
    lines.append("\n(The two-worker runs were skipped: this meshdrill's `load` has no `--workers`.)")

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

if P.get("rss_long_conns", "none") != "none":
    lines.append(f"\n### Peak RSS (MiB), closed loop, {P['rss_long_conns']} connections, {P['rss_long']} s\n")
    lines.append("| tool | peak RSS | requests | user + sys CPU-s |")
    lines.append("|---|---|---|---|")
    for tool in ["meshdrill", "wrk", "oha"]:
        t = tm(f"rss-{tool}-longc")
        if tool == "meshdrill":
            d = js("rss-meshdrill-longc"); n = d["requests"] if d else None
        elif tool == "oha":
            n = oha_requests(js("rss-oha-longc"))
        else:
            n = wrk_requests(text("rss-wrk-longc"))
        lines.append(f"| {tool} | {f(t[3] / 1024 if t else None, '{:.1f}')} | {f(n)} | {f(t[0] + t[1] if t else None, '{:.1f}')} |")

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
