"""The response writes of one loop turn leave in one transport write (one TLS record, one send)."""

import asyncio

from thingport.runtime.bounded_http import _Coalescing, canonical_head


class RecordingTransport:
    """What left for the socket, write by write (the real transports are exercised by every HTTPS test)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_head_and_body_written_in_one_turn_leave_in_one_write() -> None:
    async def main() -> list[bytes]:
        transport = RecordingTransport()
        cycle_view = _Coalescing(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        cycle_view.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        cycle_view.write(b"{}")
        await asyncio.sleep(0)  # the end-of-turn flush finds nothing left
        return transport.writes

    assert asyncio.run(main()) == [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"]  # the name canonical too


def test_a_lone_write_leaves_at_the_end_of_the_turn() -> None:
    """``100 Continue``, or a streamed response's head: never held past the turn it was written in."""

    async def main() -> tuple[list[bytes], list[bytes]]:
        transport = RecordingTransport()
        cycle_view = _Coalescing(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        cycle_view.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        before = list(transport.writes)
        await asyncio.sleep(0)
        return before, transport.writes

    before, after = asyncio.run(main())
    assert before == [] and after == [b"HTTP/1.1 100 Continue\r\n\r\n"]


def test_close_sends_what_is_held_first_and_the_rest_passes_through() -> None:
    async def main() -> RecordingTransport:
        transport = RecordingTransport()
        cycle_view = _Coalescing(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        cycle_view.write(b"head")
        assert cycle_view.get_extra_info("peername") == "info:peername"
        cycle_view.close()
        assert cycle_view.is_closing()
        await asyncio.sleep(0)  # the scheduled flush does not write after close
        return transport

    transport = asyncio.run(main())
    assert transport.writes == [b"head"] and transport.closed


def test_canonical_head_changes_the_names_only() -> None:
    head = (b"HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\nx-request-id: ab:cd-ef\r\n"
            b"retry-after: 1\r\nContent-Length: 2\r\n\r\n")
    assert canonical_head(head) == (b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n"
                                    b"X-Request-Id: ab:cd-ef\r\nRetry-After: 1\r\nContent-Length: 2\r\n\r\n")
    assert canonical_head(b"HTTP/1.1 100 Continue\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    # what follows the blank line is a body: never touched
    assert canonical_head(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\nname: value\r\n") == (
        b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\nname: value\r\n")


def test_the_head_is_canonical_after_100_continue_and_the_body_never() -> None:
    async def main() -> list[bytes]:
        transport = RecordingTransport()
        cycle_view = _Coalescing(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        cycle_view.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await asyncio.sleep(0)
        cycle_view.write(b"HTTP/1.1 200 OK\r\ncontent-length: 17\r\n\r\n")
        cycle_view.write(b"content-type: x\r\n")
        await asyncio.sleep(0)
        return transport.writes

    assert asyncio.run(main()) == [b"HTTP/1.1 100 Continue\r\n\r\n",
                                   b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\ncontent-type: x\r\n"]
