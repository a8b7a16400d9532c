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
