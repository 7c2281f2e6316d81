"""A stream cut mid-way by the network: the SDK reconnects to the run's `Location` with
`Last-Event-ID` and the caller sees every event exactly once (stream_resumable runs)."""

import socket
import threading

from langgraph_sdk import get_sync_client


class CuttingProxy:
    """Forwards loopback TCP to the server; the first response that carries an SSE
    `metadata` event is cut right after it, as a dropped connection would be."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.cut_done = False
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self.pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self.pipe, args=(upstream, client, True), daemon=True).start()

    def pipe(self, src, dst, is_response):
        seen = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if is_response:
                    seen += data
                    with self.lock:
                        cut = not self.cut_done and b"event: metadata" in seen
                        if cut:
                            self.cut_done = True
                    if cut:
                        dst.sendall(data)
                        break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.listener.close()


def test_sdk_reconnects_to_a_cut_stream_without_gap_or_duplicate(server):
    port = int(server.url.rsplit(":", 1)[1])
    proxy = CuttingProxy(port)
    try:
        client = get_sync_client(url=f"http://127.0.0.1:{proxy.port}")
        tid = client.threads.create()["thread_id"]
        parts = list(
            client.runs.stream(
                tid,
                "slow",
                input={"seconds": 0.5},
                stream_mode=["values", "updates"],
                stream_resumable=True,
            )
        )
        assert proxy.cut_done, "the proxy never cut the stream"
        assert [p.event for p in parts] == ["metadata", "values", "updates", "values", "updates", "values"]
        assert parts[-1].data["log"] == ["slow"]
    finally:
        proxy.close()
