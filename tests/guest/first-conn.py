#!/usr/bin/env python3
# Usage: first-conn.py SOCK BACKEND ARGS...
# Runs the back-end and connects to SOCK once (then closes) as soon as it
# listens: run-guest.sh starts QEMU only after it sees the socket listen
# (polling every 20 ms), so this throwaway front-end is the back-end's first
# and QEMU its second. With vhu-blk --cpus 0,1 QEMU's connection is then
# handed to the second reactor (device 2's control ring). Exits with the
# back-end's status; the back-end takes the stop signals (sent to the group).
import signal
import socket
import subprocess
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
sock = sys.argv[1]
backend = subprocess.Popen(sys.argv[2:])
deadline = time.monotonic() + 10
while time.monotonic() < deadline and backend.poll() is None:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(sock)
        s.close()
        break
    except OSError:
        s.close()
        time.sleep(0.0005)
sys.exit(backend.wait())
