"""Sends HTTP requests to the example app and reports who served them.

    python3 load.py http://127.0.0.1:8000/ --requests 300 --concurrency 4

Prints one JSON line: {"ok": N, "failed": N, "per_pid": {"1234": N, ...}}.
Standard library only; one connection per request (gunicorn's sync
workers close each one).
"""

import argparse
import http.client
import json
import threading
import urllib.parse


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=10.0)
    options = parser.parse_args()
    url = urllib.parse.urlsplit(options.url)
    lock = threading.Lock()
    remaining = [options.requests]
    ok, failed, per_pid, errors = [0], [0], {}, []

    def worker():
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            try:
                connection = http.client.HTTPConnection(url.hostname, url.port, timeout=options.timeout)
                connection.request("GET", url.path or "/")
                response = connection.getresponse()
                body = response.read()
                connection.close()
                pid = str(json.loads(body)["pid"]) if response.status == 200 else None
            except (OSError, http.client.HTTPException, ValueError, KeyError) as error:
                pid = None
                with lock:
                    errors.append(repr(error))
            with lock:
                if pid is None:
                    failed[0] += 1
                else:
                    ok[0] += 1
                    per_pid[pid] = per_pid.get(pid, 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(max(1, options.concurrency))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"ok": ok[0], "failed": failed[0], "per_pid": per_pid, "errors": errors[:5]}), flush=True)


if __name__ == "__main__":
    main()
