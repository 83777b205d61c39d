import socket

from deployments.stack import pick_port, port_is_free


def test_a_busy_port_is_reported_and_the_next_free_one_used(capsys):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        assert not port_is_free(busy)
        chosen = pick_port(busy)
    assert chosen > busy and port_is_free(chosen)
    assert f"port {busy} is busy" in capsys.readouterr().out
