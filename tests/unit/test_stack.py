import socket
import subprocess
import sys

from deployments.doctor import _fix_unreachable
from deployments.stack import Stack, point_clients_at, settle
from infra.ports import pick_port, port_is_free


def test_a_busy_port_is_reported_and_the_next_free_one_used(capsys):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        assert not port_is_free(busy)
        chosen = pick_port(busy)
    assert chosen > busy and port_is_free(chosen)
    assert f"port {busy} is busy" in capsys.readouterr().out


def test_a_port_left_in_time_wait_by_a_stopped_server_is_free_again():
    """`make down` then `make demo` keeps its URL: the old server's closed connections leave
    TIME_WAIT sockets on the port, which a server binds through with SO_REUSEADDR (uvicorn's
    listening sockets have it, and so do the connections they accept)."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end goes to TIME_WAIT
        client.close()
    assert port_is_free(port)


def test_the_project_env_file_points_clients_at_the_server_and_keeps_other_lines(tmp_path):
    env = tmp_path / ".env"
    env.write_text("MY_OWN=1\n")
    point_clients_at("http://127.0.0.1:4201/api", env)
    point_clients_at("http://127.0.0.1:4200/api", env)
    lines = env.read_text().splitlines()
    assert lines[0] == "MY_OWN=1" and lines[-1] == "PREFECT_API_URL=http://127.0.0.1:4200/api"
    assert sum(line.startswith("PREFECT_API_URL=") for line in lines) == 1
    point_clients_at(None, env)
    assert env.read_text() == "MY_OWN=1\n"
    point_clients_at(None, env)
    env.unlink()
    point_clients_at("http://x/api", env)
    point_clients_at(None, env)
    assert not env.exists()


def sleeper() -> subprocess.Popen:
    """A live process to record as a server or worker: a group of its own, as the stack starts
    them, and SIGINT ends it, as it ends a worker."""
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )


def test_up_after_the_server_died_stops_its_orphaned_worker_and_forgets_dead_ones(capsys):
    """`make up` after a kill -9 of the server: the worker still alive would poll a dead URL and
    be lost to `make down`; it is stopped, and PIDs of workers already gone are dropped."""
    server, worker, gone = sleeper(), sleeper(), sleeper()
    gone.kill()
    gone.wait()
    server.kill()
    server.wait()
    try:
        stack = Stack("http://127.0.0.1:1", server.pid, [worker.pid, gone.pid])
        assert settle(stack).worker_pids == []
        assert worker.wait(10) is not None
        assert f"stopped worker PID {worker.pid}" in capsys.readouterr().out
    finally:
        worker.kill()


def test_up_with_a_live_server_keeps_its_live_workers():
    server, worker, gone = sleeper(), sleeper(), sleeper()
    gone.kill()
    gone.wait()
    try:
        stack = Stack("http://127.0.0.1:1", server.pid, [worker.pid, gone.pid])
        assert settle(stack).worker_pids == [worker.pid]
        assert worker.poll() is None
    finally:
        for proc in (server, worker):
            proc.kill()
            proc.wait()


def test_doctor_points_at_the_projects_server_on_another_port_or_says_it_stopped():
    """PREFECT_API_URL does not answer: the fix names this project's server where it really
    runs (`make up` moved to a free port), or says the recorded server has stopped."""
    server = sleeper()
    try:
        moved = Stack("http://127.0.0.1:4201", server.pid)
        fix = _fix_unreachable("http://127.0.0.1:4200/api", moved)
        assert fix == (
            "this project's server runs at http://127.0.0.1:4201: "
            "export PREFECT_API_URL=http://127.0.0.1:4201/api"
        )
    finally:
        server.kill()
        server.wait()
    stale = _fix_unreachable("http://127.0.0.1:4201/api", moved)
    assert stale == "the server recorded in var/stack has stopped: make up (starts it again)"
    assert _fix_unreachable("http://x/api", Stack()).startswith("make server")
