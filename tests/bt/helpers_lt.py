"""helpers_lt.py — libtorrent (python3-libtorrent, /usr/bin/python3) as a seeder or a
leecher on loopback, for the interop tests and bench/40_bt.sh. Stopped by PID by its caller.

    helpers_lt.py seed  TORRENT DIR --port P [--bind IP] [--peer IP:PORT]... [--trust]
    helpers_lt.py fetch TORRENT DIR --port P [--bind IP] [--peer IP:PORT]... [--timeout S] [--stay]

Prints "listening on PORT" when the listen socket is up, "seeding" once a seeder holds
every piece, "progress <permille> <bytes> <peers>" about every second, and for fetch
"complete <seconds> <bytes>" (seconds from the first byte asked to the last verified), then
exits 0 (or keeps seeding with --stay). DHT, LSD, UPnP, NAT-PMP and uTP are off (uTP can
stall on loopback); several connections per IP are allowed (every client is 127.0.0.x).
"""
import argparse
import sys
import time

import libtorrent as lt


def peer_arg(s):
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError("expected IP:PORT, got %r" % s)
    return host, int(port)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["seed", "fetch"])
    ap.add_argument("torrent")
    ap.add_argument("dir")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--peer", type=peer_arg, action="append", default=[])
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--stay", action="store_true")
    ap.add_argument("--trust", action="store_true", help="seed without checking the files (seed_mode)")
    ap.add_argument("--upload-limit", type=int, default=0, help="bytes/s, 0: none")
    a = ap.parse_args()

    settings = {
        "listen_interfaces": "%s:%d" % (a.bind, a.port),
        "outgoing_interfaces": a.bind,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "allow_multiple_connections_per_ip": True,
        "user_agent": "libtorrent-interop-test",
        "alert_mask": lt.alert.category_t.status_notification | lt.alert.category_t.error_notification,
        "connections_limit": 500,
        "active_downloads": -1, "active_seeds": -1, "active_limit": -1,
        "upload_rate_limit": a.upload_limit,
    }
    ses = lt.session(settings)
    if a.upload_limit:
        # Loopback peers are in the unlimited "local" class by default: put them in the global one.
        f = lt.ip_filter()
        f.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
        ses.set_peer_class_filter(f)
    ti = lt.torrent_info(a.torrent)
    atp = lt.add_torrent_params()
    atp.ti = ti
    atp.save_path = a.dir
    if a.mode == "seed" and a.trust:
        atp.flags |= lt.torrent_flags.seed_mode
    h = ses.add_torrent(atp)

    deadline = time.time() + 30
    listening = False
    while not listening and time.time() < deadline:
        for al in ses.pop_alerts():
            if isinstance(al, lt.listen_succeeded_alert):
                listening = True
            elif isinstance(al, lt.listen_failed_alert):
                print("error listen failed: %s" % al.message(), flush=True)
                sys.exit(1)
        ses.wait_for_alert(200)
    print("listening on %d" % a.port, flush=True)

    for host, port in a.peer:
        h.connect_peer((host, port))
    t0 = time.time()
    last_print = 0
    last_connect = time.time()
    announced_seed = False
    total = ti.total_size()
    while True:
        st = h.status()
        now = time.time()
        if now - last_print >= 1:
            print("progress %d %d %d %s" % (int(st.progress_ppm / 1000), st.total_wanted_done, st.num_peers,
                                            st.state), flush=True)
            last_print = now
        for al in ses.pop_alerts():
            if isinstance(al, (lt.torrent_error_alert, lt.file_error_alert)):
                print("error %s" % al.message(), flush=True)
        if st.is_seeding or (st.total_wanted_done == st.total_wanted and st.total_wanted > 0
                             and st.state in (lt.torrent_status.seeding, lt.torrent_status.finished)):
            if a.mode == "fetch" and not announced_seed:
                print("complete %.3f %d" % (now - t0, st.total_wanted_done), flush=True)
                announced_seed = True
                if not a.stay:
                    break
            elif a.mode == "seed" and not announced_seed:
                print("seeding %d" % total, flush=True)
                announced_seed = True
        if a.mode == "fetch" and now - t0 > a.timeout:
            print("error timeout after %.0fs at %d/%d bytes" % (now - t0, st.total_wanted_done, st.total_wanted),
                  flush=True)
            sys.exit(1)
        # Re-dial given peers that dropped (a seeder restarts, a refused first attempt).
        if a.peer and st.num_peers < len(a.peer) and now - last_connect > 2:
            for host, port in a.peer:
                h.connect_peer((host, port))
            last_connect = now
        ses.wait_for_alert(100)
    sys.exit(0)


if __name__ == "__main__":
    main()
