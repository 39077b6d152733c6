"""Sustained end to end for bench/run: intake at maximum while the node delivers, then the drain.

  sustained.py PID SINK_STATS_URL OUT -- LOAD_COMMAND...
  sustained.py PID - OUT -- LOAD_COMMAND...     intake only: no drain, CPU per accepted event
  sustained.py drain SINK_STATS_URL N OUT -- WORKER_COMMAND...
                                               starts a worker-only node on a stored backlog of
                                               N and measures it until the sink has N more:
                                               deliveries/s and CPU µs per delivery, per kind
                                               of thread; then stops it

Runs LOAD_COMMAND (an `oncehook bench --json` closed-loop run against the node whose process
is PID, its JSON on stdout) while sampling, every 100 ms, the deliveries the sink has seen and
the node's CPU time (user + system, from /proc/PID/stat). When the load stops it keeps sampling
until the sink has seen every event the load got a 202 for (its count
rises from where it stood when the load began) and nothing new arrived for 2 s, or 120 s pass.
LOAD_COMMAND runs without a warm-up (`--warmup 0s`), so all of its 202s are counted.
Writes OUT with:

  accepted_per_sec        202s per second of load (the generator's own figure)
  delivered_during_load   deliveries the sink saw while the load ran, and per second
  backlog_seconds         from the end of the load to the last delivery
  sustained_per_sec       deliveries ÷ (load + backlog seconds): what the node takes *and*
                          delivers per second, the figure a node is sized by
  repeats                 deliveries of an event the sink had already seen (must be 0)
  cpu_us_per_webhook      the node's CPU time over the whole run ÷ events delivered

Only the standard library.
"""
import json
import os
import subprocess
import sys
import time
import urllib.request

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces; the fields after it are fixed.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def thread_cpu_seconds(pid):
    """CPU seconds per thread name (the writer, the checkpointer, tokio's workers…)."""
    totals = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        totals[name] = totals.get(name, 0) + (int(fields[11]) + int(fields[12])) / TICKS
    return totals


def drain(stats_url, wanted, out, command):
    # Read before the worker starts: it delivers from its first milliseconds.
    first = sink(stats_url)
    start_count, start_repeats = first.get("deliveries", 0), first.get("repeats", 0)
    worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid = worker.pid
    started = time.monotonic()
    count = start_count
    while count - start_count < wanted and time.monotonic() - started < 300:
        time.sleep(0.05)
        count = sink(stats_url).get("deliveries", count)
    seconds = time.monotonic() - started
    delivered = count - start_count
    threads = thread_cpu_seconds(pid)
    total = sum(threads.values())
    report = {
        "delivered": delivered,
        "seconds": round(seconds, 2),
        "sustained_per_sec": round(delivered / seconds) if seconds else 0,
        "accepted_per_sec": None,
        "backlog_seconds": None,
        "repeats": sink(stats_url).get("repeats", 0) - start_repeats,
        "cpu_us_per_webhook": round(total * 1e6 / delivered, 1) if delivered else None,
        "cpu_us_per_webhook_by_thread": {
            name: round(cpu * 1e6 / delivered, 1) for name, cpu in sorted(threads.items())
            if delivered and cpu > 0},
    }
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    worker.terminate()
    worker.wait()


def sink(url):
    try:
        return json.load(urllib.request.urlopen(url, timeout=5))
    except (OSError, ValueError):
        return {}


def main():
    if sys.argv[1] == "drain":
        stats_url, wanted, out = sys.argv[2:5]
        drain(stats_url, int(wanted), out, sys.argv[sys.argv.index("--") + 1:])
        return
    pid, stats_url, out = sys.argv[1:4]
    command = sys.argv[sys.argv.index("--") + 1:]
    start_cpu, started = cpu_seconds(pid), time.monotonic()
    if stats_url == "-":
        result = json.loads(subprocess.run(command, capture_output=True).stdout or "{}")
        cpu = cpu_seconds(pid) - start_cpu
        accepted = result.get("accepted_202", 0)
        report = {
            "load": result,
            "accepted_per_sec": result.get("requests_per_sec"),
            "accepted": accepted,
            "cpu_seconds": round(cpu, 2),
            "cpu_us_per_webhook": round(cpu * 1e6 / accepted, 1) if accepted else None,
        }
        with open(out, "w") as f:
            json.dump(report, f, indent=2)
        print(f"  intake only: {report['accepted_per_sec'] or 0:,.0f} accepted/s, "
              f"{report['cpu_us_per_webhook']} CPU µs per webhook", file=sys.stderr)
        return
    start_count = sink(stats_url).get("deliveries", 0)
    start_repeats = sink(stats_url).get("repeats", 0)
    load = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    while load.poll() is None:
        time.sleep(0.1)
    load_ended = time.monotonic()
    at_load_end = sink(stats_url).get("deliveries", 0)
    try:
        result = json.loads(load.stdout.read())
    except ValueError:
        result = {}
    # Every 202 is to be delivered (the load runs without a warm-up, so the generator counts
    # them all).
    wanted = result.get("accepted_202", 0)

    last_count, last_change = at_load_end, time.monotonic()
    while time.monotonic() - load_ended < 120:
        count = sink(stats_url).get("deliveries", 0)
        now = time.monotonic()
        if count != last_count:
            last_count, last_change = count, now
        if count - start_count >= wanted and now - last_change >= 2:
            break
        if now - last_change >= 10:
            break  # nothing moves: report what arrived
        time.sleep(0.1)
    final = sink(stats_url)
    end_cpu = cpu_seconds(pid)
    delivered = final.get("deliveries", 0) - start_count
    load_seconds = load_ended - started
    backlog = max(0.0, last_change - load_ended)
    report = {
        "load": result,
        "accepted_per_sec": result.get("requests_per_sec"),
        "accepted": wanted,
        "delivered": delivered,
        "delivered_during_load": at_load_end - start_count,
        "delivered_during_load_per_sec": round((at_load_end - start_count) / load_seconds),
        "load_seconds": round(load_seconds, 2),
        "backlog_seconds": round(backlog, 2),
        "sustained_per_sec": round(delivered / (load_seconds + backlog)) if delivered else 0,
        "repeats": final.get("repeats", 0) - start_repeats,
        "cpu_seconds": round(end_cpu - start_cpu, 2),
        "cpu_us_per_webhook": round((end_cpu - start_cpu) * 1e6 / delivered, 1) if delivered else None,
        "end_to_end_us": final.get("end_to_end_us"),
    }
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"  sustained: {report['accepted_per_sec'] or 0:,.0f} accepted/s, "
          f"{report['delivered_during_load_per_sec']:,} delivered/s while loaded, "
          f"{report['backlog_seconds']} s backlog after, {report['sustained_per_sec']:,}/s sustained, "
          f"{report['repeats']} repeats, {report['cpu_us_per_webhook']} CPU µs per webhook",
          file=sys.stderr)


if __name__ == "__main__":
    main()
