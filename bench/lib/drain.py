"""Delivery throughput for bench/run: how fast a node drains its deliveries to a destination.

  drain.py stream NAME SUBJECTS        create a JetStream stream on 127.0.0.1:4222 (raw protocol)
  drain.py stream-count NAME           messages the stream holds
  drain.py wait METRICS_URL DEST N OUT wait until DEST has N delivered deliveries (read from the
                                       node's /metrics), then write {deliveries, seconds, per_sec}

The clock starts at the first delivery seen, so the figure is the lanes' rate, not intake's.
"""
import json
import re
import socket
import sys
import time
import urllib.request


def nats_request(subject, payload):
    with socket.create_connection(("127.0.0.1", 4222), timeout=5) as s:
        f = s.makefile("rb")
        f.readline()  # INFO
        inbox = "_INBOX.bench"
        body = json.dumps(payload).encode()
        s.sendall(b'CONNECT {"verbose":false,"headers":true}\r\n')
        s.sendall(f"SUB {inbox} 1\r\n".encode())
        s.sendall(f"PUB {subject} {inbox} {len(body)}\r\n".encode() + body + b"\r\nPING\r\n")
        while True:
            line = f.readline()
            if not line:
                raise SystemExit("drain.py: NATS closed the connection")
            if line.startswith(b"MSG"):
                size = int(line.split()[-1])
                answer = json.loads(f.read(size + 2)[:size])
                if "error" in answer:
                    raise SystemExit(f"drain.py: {subject}: {answer['error']}")
                return answer
            if line.startswith(b"-ERR"):
                raise SystemExit(f"drain.py: {line.decode().strip()}")


def delivered(metrics_url, destination):
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    pattern = re.compile(
        r'^oncehook_deliveries_total\{(?=[^}]*destination="%s")(?=[^}]*outcome="delivered")[^}]*\} (\S+)$'
        % re.escape(destination), re.M)
    return sum(float(m.group(1)) for m in pattern.finditer(text))


def main():
    command, *args = sys.argv[1:]
    if command == "stream":
        name, subjects = args
        nats_request(f"$JS.API.STREAM.CREATE.{name}",
                     {"name": name, "subjects": [subjects], "storage": "file",
                      "duplicate_window": 120_000_000_000})
    elif command == "stream-count":
        (name,) = args
        print(nats_request(f"$JS.API.STREAM.INFO.{name}", {})["state"]["messages"])
    elif command == "stream-delete":
        (name,) = args
        nats_request(f"$JS.API.STREAM.DELETE.{name}", {})
    elif command == "wait":
        url, destination, wanted, out = args
        wanted = int(wanted)
        deadline = time.monotonic() + 300
        first = None
        count = 0
        while time.monotonic() < deadline:
            count = delivered(url, destination)
            if count > 0 and first is None:
                first = (time.monotonic(), count)
            if count >= wanted:
                break
            time.sleep(0.05)
        end = time.monotonic()
        seconds = end - first[0] if first else None
        drained = count - first[1] if first else 0
        json.dump({"destination": destination, "deliveries": count, "wanted": wanted,
                   "seconds": None if seconds is None else round(seconds, 3),
                   "per_sec": round(drained / seconds) if seconds else None},
                  open(out, "w"))
        print(f"{destination}: {int(count)} of {wanted} delivered, "
              f"{round(drained / seconds) if seconds else 0} deliveries/s", file=sys.stderr)
    else:
        raise SystemExit(f"drain.py: unknown command {command}")


if __name__ == "__main__":
    main()
