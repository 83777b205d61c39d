"""Free TCP ports on 127.0.0.1: for the stack's server, the compose stack, the tests."""

from __future__ import annotations

import socket

DEFAULT_PORT = 4200  # Prefect's own default: the UI on http://127.0.0.1:4200


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing listens on ``port``. SO_REUSEADDR as the server itself binds: the sockets a
    stopped server leaves in TIME_WAIT do not make its port look busy."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(preferred: int = DEFAULT_PORT, tries: int = 50) -> int:
    """``preferred`` if free, else the next free port, saying so."""
    for port in range(preferred, preferred + tries):
        if port_is_free(port):
            if port != preferred:
                print(f"port {preferred} is busy (another Prefect server?); using {port} instead")
            return port
    raise SystemExit(f"no free port in {preferred}..{preferred + tries - 1}; stop what holds them")
