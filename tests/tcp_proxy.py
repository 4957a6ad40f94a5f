"""A TCP proxy on 127.0.0.1 that a test can make hang: ``hold()`` stops forwarding in both
directions without closing anything (a database or cache that stopped answering: a frozen
host, a dead switch, a SIGSTOPped process), ``release()`` lets the held bytes through, or,
after ``hold(drop=True)``, cuts the connections of the hold, so what was sent meanwhile is
lost (a stall that ended with its writes timed out)."""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    def __init__(self, *, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self._flowing = threading.Event()
        self._flowing.set()
        self._dropping = False
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def held(self) -> bool:
        return not self._flowing.is_set()

    def hold(self, *, drop: bool = False) -> None:
        self._dropping = drop
        self._flowing.clear()

    def release(self) -> None:
        if self._dropping and self.held:
            held_sockets, self._sockets = self._sockets, []
            for sock in held_sockets:
                _cut(sock)
        self._dropping = False
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self.release()
        for sock in [self._listener, *self._sockets]:
            _cut(sock)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self._dropping and not self._flowing.is_set():
                    continue
                self._flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def _cut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
