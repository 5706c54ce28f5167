#!/usr/bin/env python3
"""GETs a URL and reports how long the last bytes waited after the ones before them.

Usage: lastbyte.py URL
Prints: "<status> <bytes> <total_s> <ttfb_s> <final_wait_s>" where final_wait_s is the time between
the arrival of the last chunk before the final one and the final chunk. A cache that holds the
final byte back until the blob is verified and committed (fsync, rename) shows that commit here.
"""

import http.client
import sys
import time
import urllib.parse


def main():
    u = urllib.parse.urlsplit(sys.argv[1])
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=120)
    t0 = time.monotonic()
    conn.request("GET", u.path + ("?" + u.query if u.query else ""))
    resp = conn.getresponse()
    ttfb = time.monotonic() - t0
    got = 0
    prev = time.monotonic()
    final_wait = 0.0
    while True:
        chunk = resp.read1(1 << 20)
        now = time.monotonic()
        if not chunk:
            break
        final_wait = now - prev
        got += len(chunk)
        prev = now
    print(f"{resp.status} {got} {prev - t0:.4f} {ttfb:.4f} {final_wait:.4f}")


if __name__ == "__main__":
    main()
