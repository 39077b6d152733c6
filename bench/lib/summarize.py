"""Turns the raw files of one `bench/run` into bench/results/NAME.json and a printed table.

    summarize.py line FILE LABEL      one line about one `oncehook bench --json` result
    summarize.py report RAW_DIR OUT   the whole run: results JSON, tables, targets

Only the standard library, so `bench/run` needs nothing but python3.
"""

import glob
import json
import os
import sys

SERVERS = [
    ("baseline", "baseline (axum, reads body, 202)"),
    ("handrolled", "hand-rolled (verify + INSERT + commit per request)"),
    ("oncehook", "oncehook (SQLite, group commit)"),
]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_int(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return None


def ms(us):
    return "—" if us is None else f"{us / 1000:.2f}"


def line(path, label):
    r = load(path)
    if not r:
        print(f"  {label:<24} no result (see {path[:-5]}.log)")
        return
    lat = r["latency_us"]
    extra = ""
    if r["error_total"]:
        extra += f" errors {r['error_total']}"
    if r["not_sent"]:
        extra += f" not-sent {r['not_sent']}"
    if r["server_5xx"]:
        extra += f" 5xx {r['server_5xx']}"
    print(
        f"  {label:<24} {r['requests_per_sec']:>9.0f} req/s  "
        f"p50 {ms(lat['p50'])} ms  p99 {ms(lat['p99'])} ms  p99.9 {ms(lat['p999'])} ms  "
        f"202 {r['accepted_202']} 200 {r['duplicate_200']}{extra}"
    )


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def report(raw, out):
    machine = load(os.path.join(raw, "machine.json")) or {}
    # Other work on the machine skews every number; keep how busy it was.
    machine["load_average_at_end"] = list(os.getloadavg())
    runs = {}
    for path in sorted(glob.glob(os.path.join(raw, "*.json"))):
        name = os.path.basename(path)[:-5]
        if name not in ("machine", "sink", "postgres-skipped") and not name.startswith(("drain-", "sustained-")):
            runs[name] = load(path)

    def rps(name):
        r = runs.get(name)
        return r["requests_per_sec"] if r else None

    def p99(name):
        r = runs.get(name)
        return r["latency_us"]["p99"] if r else None

    base, hand, once = rps("baseline-max"), rps("handrolled-max"), rps("oncehook-max")
    rates = sorted(
        {int(n.rsplit("-", 1)[1]) for n in runs if n.startswith("oncehook-open-")}
    )

    # Storage from the maximum-throughput run that stored the most events (each had its own
    # file); events counted in the file, since warm-up requests are stored but not reported.
    events, db_bytes = 0, None
    for n in runs:
        stored = read_int(os.path.join(raw, f"{n}-db-events")) or 0
        if n.startswith("oncehook-max-c") and stored > events:
            events, db_bytes = stored, read_int(os.path.join(raw, f"{n}-db-bytes"))
    hwm = [read_int(p) for p in glob.glob(os.path.join(raw, "oncehook-*-hwm"))]
    rss = [read_int(p) for p in glob.glob(os.path.join(raw, "oncehook-*-rss"))
           if "idle" not in p]
    memory = {
        "idle_rss_kib": read_int(os.path.join(raw, "oncehook-idle-rss")),
        "max_load_hwm_kib": max([read_int(p) or 0 for p in
                                 glob.glob(os.path.join(raw, "oncehook-max-c*-hwm"))] or [0]) or None,
        "peak_hwm_any_run_kib": max([h for h in hwm if h] or [0]) or None,
        "peak_sampled_rss_kib": max([r for r in rss if r] or [0]) or None,
    }
    storage = {
        "db_bytes": db_bytes,
        "events": events,
        "bytes_per_event": round(db_bytes / events) if db_bytes and events else None,
        "body_size": machine.get("body_size"),
    }

    sink = load(os.path.join(raw, "sink.json")) or {}
    if sink.get("deliveries"):
        end_to_end = {"status": "measured", **sink}
    else:
        end_to_end = {"status": "no deliveries seen", **sink}

    scale = {}
    for fill in sorted(glob.glob(os.path.join(raw, "scale-*-fill.json"))):
        keys = os.path.basename(fill).split("-")[1]
        scale_db = read_int(os.path.join(raw, f"scale-{keys}-db-bytes"))
        stored = read_int(os.path.join(raw, f"scale-{keys}-db-events"))
        scale[keys] = {
            "fill": runs.get(f"scale-{keys}-fill"),
            "max": runs.get(f"scale-{keys}-max"),
            "open_50_dup10": runs.get(f"scale-{keys}-open-50"),
            "hwm_kib": read_int(os.path.join(raw, f"scale-{keys}-hwm")),
            "db_bytes": scale_db,
            "events": stored,
            "bytes_per_event": round(scale_db / stored) if scale_db and stored else None,
        }

    delivery_throughput = {}
    for kind in ("http", "jetstream"):
        drained = load(os.path.join(raw, f"drain-{kind}.json"))
        if drained is not None:
            delivery_throughput[kind] = drained
    messages = read_int(os.path.join(raw, "drain-jetstream-stream-messages"))
    if messages is not None and "jetstream" in delivery_throughput:
        delivery_throughput["jetstream"]["stream_messages"] = messages

    sustained = {
        "intake_only": load(os.path.join(raw, "sustained-intake-only.json")),
        "end_to_end": load(os.path.join(raw, "sustained-end-to-end.json")),
    }
    intake_only = (sustained["intake_only"] or {}).get("accepted_per_sec")
    e2e_run = sustained["end_to_end"] or {}
    sustained["ratio_to_intake_only"] = ratio(e2e_run.get("sustained_per_sec"), intake_only)

    postgres = load(os.path.join(raw, "postgres-skipped.json"))
    if postgres is None and "postgres-max" in runs:
        postgres = {"max": runs["postgres-max"], "open_50": runs.get("postgres-open-50")}

    half = p99("oncehook-open-50")
    e2e_p95 = (sink.get("end_to_end_us") or {}).get("p95") if sink.get("deliveries") else None
    peak_kib = max(filter(None, [memory["max_load_hwm_kib"], memory["peak_hwm_any_run_kib"]]),
                   default=None)
    cpu_e2e = e2e_run.get("cpu_us_per_webhook")
    backlog = e2e_run.get("backlog_seconds")
    targets = {
        "cpu_us_per_webhook_intake_and_delivery": {
            "target": "<= 40", "value": cpu_e2e,
            "met": cpu_e2e is not None and cpu_e2e <= 40},
        "sustained_end_to_end_vs_intake_only": {
            "target": ">= 0.9, backlog <= 1 s after the load",
            "value": {"ratio": sustained["ratio_to_intake_only"], "backlog_seconds": backlog,
                      "repeats": e2e_run.get("repeats")},
            "met": bool(sustained["ratio_to_intake_only"] and sustained["ratio_to_intake_only"] >= 0.9
                        and backlog is not None and backlog <= 1 and e2e_run.get("repeats") == 0)},
        "intake_only_vs_baseline": {
            "target": ">= 0.30 (goal 0.50)", "value": ratio(intake_only, base),
            "met": bool(intake_only and base and intake_only >= 0.3 * base)},
        "throughput_vs_baseline": {
            "target": ">= 0.5", "value": ratio(once, base),
            "met": bool(once and base and once >= 0.5 * base)},
        "throughput_vs_handrolled": {
            "target": ">= 10", "value": ratio(once, hand),
            "met": bool(once and hand and once >= 10 * hand)},
        "ack_p99_at_half_max_ms": {
            "target": "<= 5", "value": None if half is None else half / 1000,
            "met": half is not None and half <= 5000},
        "end_to_end_p95_at_half_max_ms": {
            "target": "<= 25", "value": e2e_p95 if e2e_p95 is None else e2e_p95 / 1000,
            "met": e2e_p95 is not None and e2e_p95 <= 25000},
        "rss_under_max_load_mib": {
            "target": "< 128", "value": None if peak_kib is None else round(peak_kib / 1024, 1),
            "met": peak_kib is not None and peak_kib < 128 * 1024},
    }

    # Stored keys must not slow intake: the largest scale test against the empty store.
    if scale:
        keys = max(scale, key=int)
        full = scale[keys]
        empty_rps = (runs.get("oncehook-max") or {}).get("requests_per_sec")
        full_rps = (full.get("max") or {}).get("requests_per_sec")
        empty_p99 = p99("oncehook-dup10")
        full_p99 = ((full.get("open_50_dup10") or {}).get("latency_us") or {}).get("p99")
        rps_ratio = ratio(full_rps, empty_rps)
        p99_ratio = ratio(full_p99, empty_p99)
        targets[f"scale_{keys}_keys_vs_empty"] = {
            "target": "throughput >= 0.85x and p99 <= 1.15x of the empty store",
            "value": {"throughput_ratio": rps_ratio, "p99_ratio": p99_ratio},
            "met": bool(rps_ratio and p99_ratio and rps_ratio >= 0.85 and p99_ratio <= 1.15)}

    result = {
        "machine": machine,
        "max_by_connections": {
            n: {"connections": r["connections"], "requests_per_sec": r["requests_per_sec"],
                "latency_us": r["latency_us"]}
            for n, r in runs.items() if "-max-c" in n and r
        },
        "max": {
            "baseline": runs.get("baseline-max"),
            "handrolled": runs.get("handrolled-max"),
            "oncehook": runs.get("oncehook-max"),
        },
        "open_loop": {
            str(pct): {s: runs.get(f"{s}-open-{pct}") for s, _ in SERVERS} for pct in rates
        },
        "duplicates_10pct_at_half_max": runs.get("oncehook-dup10"),
        "end_to_end": end_to_end,
        "delivery_throughput": delivery_throughput,
        "sustained": sustained,
        "memory": memory,
        "storage": storage,
        "scale": scale,
        "postgres": postgres,
        "targets": targets,
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print_tables(result)


def print_tables(result):
    m = result["machine"]
    print()
    print(f"machine: {m.get('nproc')} cores, {m.get('cpu')}, {m.get('memory_gib')} GiB, "
          f"kernel {m.get('kernel')}; load average at start {fmt_load(m.get('load_average_at_start'))}, "
          f"at end {fmt_load(m.get('load_average_at_end'))}")
    print(f"runs: {m.get('duration')} each after {m.get('warmup')} warm-up, "
          f"{m.get('connections_closed_loop')} connections closed loop (the better counts), "
          f"{m.get('connections_open_loop')} open loop, {m.get('body_size')} B bodies")
    mx = result["max"]
    base = (mx.get("baseline") or {}).get("requests_per_sec")
    hand = (mx.get("handrolled") or {}).get("requests_per_sec")
    print()
    print("| configuration | max req/s | conns | × baseline | × hand-rolled | p50 ms | p99 ms | p99.9 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for key, label in SERVERS:
        r = mx.get(key)
        if not r:
            print(f"| {label} | — | | | | | | |")
            continue
        v = r["requests_per_sec"]
        lat = r["latency_us"]
        print(f"| {label} | {v:,.0f} | {r['connections']} | {fmt(ratio(v, base))} | {fmt(ratio(v, hand))} | "
              f"{ms(lat['p50'])} | {ms(lat['p99'])} | {ms(lat['p999'])} |")
    print()
    print("Open loop (latency from intended send time; p50 / p99 / p99.9 ms):")
    print()
    print("| offered | req/s | " + " | ".join(label.split(" (")[0] for _, label in SERVERS) + " |")
    print("|---|---:|" + "---|" * len(SERVERS))
    for pct, row in result["open_loop"].items():
        rate = next((r["offered_rate"] for r in row.values() if r), None)
        cells = []
        for key, _ in SERVERS:
            r = row.get(key)
            if not r:
                cells.append("—")
                continue
            lat = r["latency_us"]
            cell = f"{ms(lat['p50'])} / {ms(lat['p99'])} / {ms(lat['p999'])}"
            if r["not_sent"] or r["error_total"] or r["server_5xx"]:
                cell += f" (overloaded: {r['requests_per_sec']:,.0f} req/s answered)"
            cells.append(cell)
        print(f"| {pct}% | {rate or 0:,.0f} | " + " | ".join(cells) + " |")
    d = result["duplicates_10pct_at_half_max"]
    if d:
        lat = d["latency_us"]
        print()
        print(f"10% duplicates at {d['offered_rate']:,.0f} req/s: 202 {d['accepted_202']}, "
              f"200 {d['duplicate_200']}; p50 {ms(lat['p50'])} / p99 {ms(lat['p99'])} / "
              f"p99.9 {ms(lat['p999'])} ms")
    e = result["end_to_end"]
    print()
    if e["status"] == "measured":
        lat = e["end_to_end_us"]
        print(f"end to end: {e['deliveries']} deliveries ({e['repeats']} repeats); "
              f"p50 {ms(lat['p50'])} / p95 {ms(lat.get('p95'))} / p99 {ms(lat['p99'])} / "
              f"max {ms(lat['max'])} ms")
    else:
        print("end to end: no deliveries seen (this build has no delivery workers)")
    su = result.get("sustained") or {}
    io, ee = su.get("intake_only") or {}, su.get("end_to_end") or {}
    if io or ee:
        print(f"intake only: {io.get('accepted_per_sec') or 0:,.0f} accepted/s, "
              f"{io.get('cpu_us_per_webhook')} CPU µs per webhook")
        print(f"sustained end to end: {ee.get('accepted_per_sec') or 0:,.0f} accepted/s, "
              f"{ee.get('delivered_during_load_per_sec', 0):,} delivered/s while loaded, "
              f"backlog {ee.get('backlog_seconds')} s after the load, "
              f"{ee.get('sustained_per_sec', 0):,}/s sustained ({fmt(su.get('ratio_to_intake_only'))} × intake only), "
              f"{ee.get('repeats')} repeats, {ee.get('cpu_us_per_webhook')} CPU µs per webhook")
    for kind, d in result.get("delivery_throughput", {}).items():
        if d.get("per_sec"):
            print(f"delivery throughput, {kind}: {d['per_sec']:,} deliveries/s "
                  f"({int(d['deliveries'])} of {d['wanted']} in {d['seconds']} s)")
        else:
            print(f"delivery throughput, {kind}: not measured ({d.get('skipped', 'no deliveries')})")
    mem, st = result["memory"], result["storage"]
    print(f"memory: idle {kib_mib(mem['idle_rss_kib'])}, under max load (VmHWM) "
          f"{kib_mib(mem['max_load_hwm_kib'])}, peak over all runs {kib_mib(mem['peak_hwm_any_run_kib'])}")
    print(f"storage: {st['bytes_per_event']} bytes per event ({st['db_bytes']} bytes / "
          f"{st['events']} events, {st['body_size']} B bodies)")
    for keys, s in result["scale"].items():
        r, o = s.get("max") or {}, s.get("open_50_dup10") or {}
        print(f"scale {int(keys):,} keys: max {r.get('requests_per_sec', 0):,.0f} req/s, "
              f"p99 at 50% with 10% dups {ms((o.get('latency_us') or {}).get('p99'))} ms, "
              f"{s['bytes_per_event']} bytes/event, VmHWM {kib_mib(s['hwm_kib'])}")
    if result["postgres"]:
        print(f"postgres: {json.dumps(result['postgres'])[:300]}")
    print()
    print("targets:")
    for name, t in result["targets"].items():
        print(f"  {'met   ' if t['met'] else 'MISSED'} {name}: {t['value']} (target {t['target']})")


def fmt_load(values):
    return "?" if not values else " ".join(f"{v:.2f}" for v in values)


def fmt(x):
    return "—" if x is None else f"{x:.2f}"


def kib_mib(kib):
    return "—" if not kib else f"{kib / 1024:.1f} MiB"


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "line":
        line(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
