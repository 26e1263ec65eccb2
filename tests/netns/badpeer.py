#!/usr/bin/env python3
"""badpeer.py MODE ... — hostile peers for the network-namespace tests (run inside a
namespace by netns_it.py; test code only).

  corrupt TORRENT FOLDER PORT   a BitTorrent seeder on 127.0.0.1:PORT that answers every
                                request with random bytes (pieces fail their SHA-1)
  random SECONDS HOST:PORT...   for SECONDS: opens TCP connections to each address and
                                writes random bytes (some after a valid-looking BitTorrent
                                protocol string), and sends random UDP datagrams to the
                                same ports (the nodes' DHT); prints what it sent
"""
import os
import random
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bt"))
import btpeer  # noqa: E402


def corrupt(torrent, folder, port):
    t = btpeer.Torrent(torrent, folder)
    s = btpeer.Seeder.__new__(btpeer.Seeder)  # its serving loop, on our own socket
    s.t, s.mode, s.rate, s.closed, s.served, s.conns = t, "corrupt", 0, False, 0, []
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(16)
    print("corrupt seeder on 127.0.0.1:%d" % port, flush=True)
    while True:
        c, a = ls.accept()
        print("connection from %s:%d" % a, flush=True)
        threading.Thread(target=s._serve, args=(c,), daemon=True).start()


def noise(seconds, addrs):
    end = time.time() + seconds
    sent = tcp = udp = 0
    rng = random.Random(1234)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    while time.time() < end:
        for host, port in addrs:
            try:
                c = socket.create_connection((host, port), timeout=1)
                prefix = b"\x13BitTorrent protocol" if rng.random() < 0.5 else b""
                data = prefix + os.urandom(rng.randrange(1, 65536))
                c.settimeout(1)
                c.sendall(data)
                c.close()
                sent += len(data)
                tcp += 1
            except OSError:
                pass
            try:
                u.sendto(os.urandom(rng.randrange(1, 1400)), (host, port))
                udp += 1
            except OSError:
                pass
        time.sleep(0.02)
    print("random: %d TCP connections, %d bytes, %d datagrams" % (tcp, sent, udp), flush=True)


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "corrupt":
        corrupt(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) >= 4 and sys.argv[1] == "random":
        noise(float(sys.argv[2]), [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in sys.argv[3:]])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
