import httpx

from tests.support.server import ServerProcess


def test_server_accepts_and_lists_an_event(server: ServerProcess) -> None:
    answer = httpx.post(
        server.url + "/v1/track",
        json={"userId": "u1", "event": "Order Completed", "writeKey": server.write_key},
    )
    assert answer.status_code == 200
    assert answer.json() == {"success": True}
    events = server.events()
    assert [e["event"] for e in events] == ["Order Completed"]


def test_the_embedded_default_does_not_load_the_postgresql_driver() -> None:
    # Every server process would carry it (about 9 MB each; RSS is a benchmark target).
    import subprocess
    import sys

    check = "import sys, cairn.cli, cairn.app, cairn.server; print('psycopg' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
