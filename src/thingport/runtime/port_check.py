"""Are the ports ``serve`` is to listen on free? Asked before it prints anything: a busy port is then one
clear ``error:`` line (exit 1), not a bind failure deep in a listener after lines that claim to serve.

A test bind, closed at once: the listeners bind again moments later (a port taken in between still fails
there). Bound as the listeners bind (``SO_REUSEADDR``, IPv6 sockets v6-only), without ``SO_REUSEPORT``: a
port another process shares out with ``SO_REUSEPORT`` is busy too.
"""

import errno
import socket

from thingport.core.errors import ThingportError
from thingport.settings import Settings


class PortUnavailable(ThingportError):
    """A listening address cannot be bound (the CLI: one ``error:`` line, exit status 1)."""


def _bind_fails(host: str, port: int) -> OSError | None:
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return exc
    for family, kind, proto, _, address in dict.fromkeys(infos):
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                return exc
    return None


def check_ports(settings: Settings) -> None:
    """Raise PortUnavailable naming the first listener (device endpoint, then management API) that cannot
    bind, and the option that moves it."""
    listeners = [("device endpoint", settings.host, settings.port, "--port"),
                 ("management API", settings.api_host, settings.api_port, "--api-port")]
    for what, host, port, option in listeners:
        if port == 0:
            continue  # any free port
        failure = _bind_fails(host, port)
        if failure is None:
            continue
        if failure.errno == errno.EADDRINUSE:
            raise PortUnavailable(f"the {what}'s port {host}:{port} is in use (another thingport?): stop what "
                                  f"holds it or choose another with {option}")
        reason = failure.strerror or str(failure)
        raise PortUnavailable(f"cannot listen on {host}:{port} for the {what}: {reason} (choose another with "
                              f"{option} or the host with {option.replace('port', 'host')})")
