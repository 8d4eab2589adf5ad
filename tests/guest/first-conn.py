#!/usr/bin/env python3
# Usage: first-conn.py SOCK READY BACKEND ARGS...
# Runs the back-end and connects to SOCK once (then closes) as soon as it
# listens, then creates the file READY: run-guest.sh (--backend with
# {ready}) starts QEMU only once READY exists, so this throwaway front-end
# is the back-end's first connection (the listener accepts in connect
# order) and QEMU its second. With vhu-blk --cpus 0,1 QEMU's connection is
# then handed to the second reactor (device 2's control ring). Exits with
# the back-end's status; the back-end takes the stop signals (sent to the
# group).
import signal
import socket
import subprocess
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
sock, ready = sys.argv[1], sys.argv[2]
backend = subprocess.Popen(sys.argv[3:])
deadline = time.monotonic() + 10
while time.monotonic() < deadline and backend.poll() is None:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(sock)  # queued first: accepted before QEMU's
        s.close()
        open(ready, "w").close()
        break
    except OSError:
        s.close()
        time.sleep(0.0005)  # until the back-end listens (bounded by the deadline)
sys.exit(backend.wait())
