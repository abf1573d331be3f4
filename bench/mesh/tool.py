#!/usr/bin/env python3
"""Helpers for bench/mesh.sh (standard library only).

  tool.py ports N                      N distinct free ports on 127.0.0.1, one per line
  tool.py snapshot NAME=PID[,PID..]... JSON: wall clock and CPU ticks (utime+stime) per name
  tool.py record OUT.jsonl KEY=VALUE... --h2load FILE --before JSON --after JSON
                                       parse one h2load run (summary + --log-file) and
                                       append one JSON line with latency, rate and CPU
  tool.py rss NAME=PID[,PID..]...      JSON: peak (VmHWM) and current (VmRSS) RSS in KiB per
                                       name, summed over its pids
  tool.py report OUT.jsonl RSS.json RSS-IDLE.json   the markdown tables
  tool.py perfsum NAME=PID...          reads `perf script -F pid,ip,sym,dso` on stdin; prints
                                       each process's samples by coarse category
"""

import json
import os
import re
import socket
import statistics
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def ports(n):
    socks, out = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        out.append(s.getsockname()[1])
    for s in socks:
        s.close()
    print("\n".join(map(str, out)))


def parse_groups(args):
    groups = {}
    for a in args:
        name, _, pids = a.partition("=")
        groups[name] = [int(p) for p in pids.split(",") if p]
    return groups


def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return int(fields[11]) + int(fields[12])


def ctx_switches(pid):
    """Voluntary + involuntary context switches of all the process's threads."""
    n = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        n += int(line.split()[1])
        except FileNotFoundError:  # the thread exited meanwhile
            pass
    return n


def snapshot(args):
    out = {"t": time.time(), "ticks": {}, "cs": {}}
    for name, pids in parse_groups(args).items():
        out["ticks"][name] = sum(ticks(p) for p in pids)
        out["cs"][name] = sum(ctx_switches(p) for p in pids)
    print(json.dumps(out))


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def rss(args):
    """Peak (VmHWM) and current (VmRSS) resident set size, summed over each name's pids."""
    out = {}
    for name, pids in parse_groups(args).items():
        hwm = [status_kib(p, "VmHWM") for p in pids]
        cur = [status_kib(p, "VmRSS") for p in pids]
        out[name] = {"kib": sum(hwm), "per_pid": hwm, "rss_kib": sum(cur),
                     "anon_kib": sum(status_kib(p, "RssAnon") for p in pids),
                     "file_kib": sum(status_kib(p, "RssFile") for p in pids)}
    print(json.dumps(out))


def nearest_rank(sorted_values, q):
    if not sorted_values:
        return float("nan")
    i = max(1, int(len(sorted_values) * q + 0.999999))
    return sorted_values[i - 1]


def record(argv):
    path = argv[0]
    row, h2, before, after = {}, None, None, None
    it = iter(argv[1:])
    for a in it:
        if a == "--h2load":
            h2 = next(it)
        elif a == "--before":
            before = json.loads(next(it))
        elif a == "--after":
            after = json.loads(next(it))
        else:
            k, _, v = a.partition("=")
            row[k] = v
    text = open(h2).read()
    m = re.search(r"finished in ([0-9.]+)(m?s), ([0-9.]+) req/s", text)
    row["h2load_rps"] = float(m.group(3)) if m else float("nan")
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    done = int(m.group(3)) if m else 0
    row["done"] = done
    row["errors"] = (int(m.group(5)) + int(m.group(6)) + int(m.group(7))) if m else -1
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    row["non2xx"] = (int(m.group(2)) + int(m.group(3)) + int(m.group(4))) if m else -1
    lat, starts, ends = [], [], []
    with open(h2 + ".log") as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) < 3:
                continue
            start_us, dur_us = int(parts[0]), int(parts[2])
            lat.append(dur_us / 1000.0)
            starts.append(start_us)
            ends.append(start_us + dur_us)
    lat.sort()
    row["logged"] = len(lat)
    for q in (0.5, 0.9, 0.99):
        row[f"p{int(q * 100)}"] = nearest_rank(lat, q)
    # achieved rate over the span of the logged requests (first start to last end)
    span = (max(ends) - min(starts)) / 1e6 if lat else 0
    row["rps"] = len(lat) / span if span > 0 else float("nan")
    wall = after["t"] - before["t"]
    row["wall_s"] = wall
    row["cpu_ms_per_1k"] = {}
    row["cpu_pct"] = {}
    row["cs_per_req"] = {}
    for name, t1 in after["ticks"].items():
        d = (t1 - before["ticks"][name]) / CLK_TCK
        row["cpu_ms_per_1k"][name] = 1e6 * d / done if done else float("nan")
        row["cpu_pct"][name] = 100 * d / wall if wall else float("nan")
        cs = after["cs"][name] - before["cs"][name]
        row["cs_per_req"][name] = cs / done if done else float("nan")
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


# --- report ---------------------------------------------------------------------------

TARGETS = [
    ("direct", "model server, direct", []),
    ("sidecar", "infermesh sidecar → model server", ["sidecar"]),
    ("gateway", "infermesh gateway → sidecar → model server", ["gateway", "sidecar"]),
    ("nginx-b", "nginx B → model server", ["nginx_b"]),
    ("nginx-a", "nginx A → nginx B → model server", ["nginx_a", "nginx_b"]),
]
HOPS = [  # hop, path with the hop, path without it, process
    ("infermesh sidecar", "sidecar", "direct", "sidecar"),
    ("infermesh gateway", "gateway", "sidecar", "gateway"),
    ("nginx B (sidecar's place)", "nginx-b", "direct", "nginx_b"),
    ("nginx A (gateway's place)", "nginx-a", "nginx-b", "nginx_a"),
]


def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def fmt(x, nd=3):
    if x != x:
        return "–"
    return f"{x:.{nd}f}"


def load_json(path):
    return json.load(open(path)) if path and os.path.exists(path) else {}


def report(path, rss_path, rss_idle_path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    rss_all = load_json(rss_path)
    rss_idle = load_json(rss_idle_path)
    rounds = sorted({int(r["round"]) for r in rows})
    out = []

    def sel(api, mode, target):
        return [r for r in rows if r["api"] == api and r["mode"] == mode and r["target"] == target]

    for mode, title in (("rate", "fixed rate"), ("sat", "saturation")):
        out.append(f"### {title}" + (" (closed loop)" if mode == "sat" else " (open loop, h2load --rps)"))
        out.append("")
        out.append("| API | path | req/s | p50 ms | p90 ms | p99 ms | errors | "
                   "CPU ms / 1k req (per proxy process) | model server CPU ms / 1k req |")
        out.append("|---|---|---:|---:|---:|---:|---:|---|---:|")
        for api in ("REST", "gRPC"):
            for key, label, procs in TARGETS:
                rs = sel(api, mode, key)
                if not rs:
                    continue
                cpu = ", ".join(
                    f"{p.replace('_', ' ')} {fmt(med([r['cpu_ms_per_1k'][p] for r in rs]), 0)}"
                    for p in procs) or "–"
                out.append(
                    f"| {api} | {label} | {med([r['rps'] for r in rs]):.0f} | "
                    f"{fmt(med([r['p50'] for r in rs]))} | {fmt(med([r['p90'] for r in rs]))} | "
                    f"{fmt(med([r['p99'] for r in rs]))} | "
                    f"{sum(r['errors'] + r['non2xx'] for r in rs)} | {cpu} | "
                    f"{fmt(med([r['cpu_ms_per_1k']['model_server'] for r in rs]), 0)} |")
        out.append("")

    out.append("### per hop")
    out.append("")
    out.append("Added p50 = p50 of the path with the hop − p50 of the same path without it, "
               "at the fixed rate, paired per round; the median over rounds, then each round's. "
               "CPU and RSS are the hop's own process(es).")
    out.append("")
    out.append("| API | hop | added p50 ms | per round | CPU ms / 1k req at fixed rate | "
               "CPU ms / 1k req at saturation | context switches / req at saturation | "
               "RSS MiB idle → peak |")
    out.append("|---|---|---:|---|---:|---:|---:|---:|")
    for api in ("REST", "gRPC"):
        for hop, with_, without, proc in HOPS:
            d50 = []
            for rd in rounds:
                a = [r for r in sel(api, "rate", with_) if int(r["round"]) == rd]
                b = [r for r in sel(api, "rate", without) if int(r["round"]) == rd]
                if a and b:
                    d50.append(a[0]["p50"] - b[0]["p50"])
            cr = med([r["cpu_ms_per_1k"][proc] for r in sel(api, "rate", with_)])
            cs = med([r["cpu_ms_per_1k"][proc] for r in sel(api, "sat", with_)])
            sw = med([r.get("cs_per_req", {}).get(proc, float("nan")) for r in sel(api, "sat", with_)])
            peak = rss_all.get(proc, {}).get("kib", float("nan")) / 1024
            idle = rss_idle.get(proc, {}).get("rss_kib", float("nan")) / 1024
            out.append(f"| {api} | {hop} | {fmt(med(d50))} | {', '.join(fmt(x) for x in d50)} | "
                       f"{fmt(cr, 0)} | {fmt(cs, 0)} | {fmt(sw, 2)} | {fmt(idle, 1)} → {fmt(peak, 1)} |")
    out.append("")

    out.append("### saturated throughput, two hops: infermesh gateway path ÷ nginx A path")
    out.append("")
    out.append("req/s ratio: paired per round. CPU-normalized: CPU ms per 1k requests of the "
               "whole nginx chain (A + B + model server) ÷ that of the infermesh chain (gateway + "
               "sidecar + model server), per round — the req/s ratio the chains would have on "
               "one fully used CPU; other work on the machine moves it much less than req/s.")
    out.append("")
    out.append("| API | req/s ratio per round | median | CPU-normalized per round | median |")
    out.append("|---|---|---:|---|---:|")
    chain = {"gateway": ["gateway", "sidecar", "model_server"],
             "nginx-a": ["nginx_a", "nginx_b", "model_server"]}
    for api in ("REST", "gRPC"):
        ratios, norm = [], []
        for rd in rounds:
            a = [r for r in sel(api, "sat", "gateway") if int(r["round"]) == rd]
            b = [r for r in sel(api, "sat", "nginx-a") if int(r["round"]) == rd]
            if a and b and b[0]["rps"] > 0:
                ratios.append(a[0]["rps"] / b[0]["rps"])
                ca = sum(a[0]["cpu_ms_per_1k"][p] for p in chain["gateway"])
                cb = sum(b[0]["cpu_ms_per_1k"][p] for p in chain["nginx-a"])
                norm.append(cb / ca if ca else float("nan"))
        out.append(f"| {api} | {', '.join(fmt(x, 2) for x in ratios)} | {fmt(med(ratios), 2)} | "
                   f"{', '.join(fmt(x, 2) for x in norm)} | {fmt(med(norm), 2)} |")
    out.append("")
    if rss_all:
        out.append("Peak RSS (VmHWM) at the end of the run, MiB: " + ", ".join(
            f"{k.replace('_', ' ')} {v['kib'] / 1024:.1f}"
            + (f" ({' + '.join(f'{x / 1024:.1f}' for x in v['per_pid'])}: master + worker)"
               if len(v["per_pid"]) > 1 else "")
            for k, v in rss_all.items()) + ".")
        out.append("")
        if all("anon_kib" in v for v in rss_all.values()):
            out.append("RSS at the end of the run, MiB anonymous + file-backed (binary and "
                       "libraries): " + ", ".join(
                           f"{k.replace('_', ' ')} {v['anon_kib'] / 1024:.1f} + {v['file_kib'] / 1024:.1f}"
                           for k, v in rss_all.items()) + ".")
            out.append("")
    print("\n".join(out))


PERF_CATEGORIES = [  # first match wins: (name, dso pattern, symbol pattern)
    ("kernel", r"kernel", None),
    ("malloc/free", r"libc", r"malloc|free|realloc|memalign|unlink_chunk|consolidate"),
    ("memmove/memcmp/memcpy", r"libc", r"mem(move|cmp|cpy|set)"),
    ("libc other", r"libc", None),
    ("h2 (HTTP/2)", None, r"^<?h2::"),
    ("hyper/httparse/http", None, r"hyper|httparse|^<?http::"),
    ("tokio", None, r"tokio"),
    ("bytes", None, r"bytes::"),
    ("regex", None, r"regex"),
    ("infermesh_authz", None, r"infermesh_authz"),
    ("infermesh_proxy", None, r"infermesh_proxy"),
    ("other", None, None),
]


def perfsum(args):
    names = {pid: name for name, pids in parse_groups(args).items() for pid in pids}
    per, tot = {}, {}
    for line in sys.stdin:
        m = re.match(r"\s*(\d+)\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", line)
        if not m:
            continue
        pid, sym, dso = int(m.group(1)), m.group(2), m.group(3).rsplit("/", 1)[-1]
        name = names.get(pid, str(pid))
        for cat, dpat, spat in PERF_CATEGORIES:
            if (dpat is None or re.search(dpat, dso)) and (spat is None or re.search(spat, sym)):
                break
        per.setdefault(name, {}).setdefault(cat, 0)
        per[name][cat] += 1
        tot[name] = tot.get(name, 0) + 1
    for name, cats in per.items():
        parts = sorted(cats.items(), key=lambda kv: -kv[1])
        print(f"{name} ({tot[name]} samples): "
              + ", ".join(f"{c} {100 * n / tot[name]:.0f}%" for c, n in parts))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "ports":
        ports(int(args[0]))
    elif cmd == "snapshot":
        snapshot(args)
    elif cmd == "rss":
        rss(args)
    elif cmd == "record":
        record(args)
    elif cmd == "perfsum":
        perfsum(args)
    elif cmd == "report":
        report(args[0], args[1] if len(args) > 1 else None, args[2] if len(args) > 2 else None)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
