"""The addon's WebSocket hooks, a mixin of addon.Gate: client messages and control frames scanned like
request bodies, a finding closing the WebSocket with the reason, and the version-gated patch of
mitmproxy 8.1.1's WebSocket layer that closing and bounded memory need. The state is the Gate's."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import detect  # noqa: E402  (sibling files in the bundle, not a package)
import dlp  # noqa: E402
import policy as pol  # noqa: E402
from verdicts import DENIED, MAX_BACKGROUND, MODE, STREAMED, deny, emit, refusal  # noqa: E402

from mitmproxy import ctx, http  # noqa: E402


class WebSocketHooks:
    _WS_CLOSE = "claude_bottle_ws_close"  # (close code, reason to the client): the addon closes this WebSocket
    _WS_LIMIT = "claude_bottle_ws_limit"  # the most a client message may hold (in memory, decompressed)
    _WS_CONTROL = "claude_bottle_ws_control"  # (kind, payload) of the client's ping or pong being checked
    WS_MAX_MESSAGE = 64 << 20  # every message, either way: mitmproxy 8.1.1 holds each one whole in memory
    WS_PIECE = 4096  # bytes fed to wsproto at a time under permessage-deflate: at most ~4 MiB inflated

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        mode = flow.metadata[MODE] = flow.metadata.get(MODE) or self.policy.dlp.mode(flow.request.host)
        flow.metadata[self._WS_LIMIT] = dlp.MAX_SCAN_BYTES if mode == "scan" else self.WS_MAX_MESSAGE
        if not self._patch_websocket_layer():
            emit("warning", **self._ws_where(flow), kind="mitmproxy",
                 reason="this mitmproxy is not 8.1: a refused WebSocket message is dropped with every later one, "
                        "and the connection is not closed; message sizes are not bounded")

    async def websocket_message(self, flow: http.HTTPFlow) -> None:
        """Runs once a message is whole (fragments joined, permessage-deflate undone by wsproto). The layer
        waits for this hook, in both directions, so the scan keeps the order of messages."""
        assert flow.websocket is not None
        # mitmproxy keeps every message of a flow, for as long as it lives; only the last one is read.
        del flow.websocket.messages[:-1]
        message = flow.websocket.messages[-1]
        if flow.metadata.get(self._WS_CLOSE):
            message.drop()  # the WebSocket is being closed: nothing after a refused message passes
            return
        try:
            if message.from_client:
                what = f"WebSocket {'text' if message.is_text else 'binary'} message"
                await self._ws_check(flow, message.content, what, message)
            elif self._scrubbed(flow):  # a server quoting the credential of its handshake
                clean = dlp.scrub(message.content, self._pairs(flow))
                if clean != message.content:
                    message.content = clean
        except Exception as e:  # noqa: BLE001 - mitmproxy would pass the message on
            self._ws_refuse(flow, message, 1011, f"internal error in the addon ({type(e).__name__}); failing closed")

    async def claude_bottle_websocket_control(self, flow: http.HTTPFlow) -> None:
        """A ping or pong from the client to a scan or warn host, with a payload (up to 125 bytes of the
        agent's choosing), checked like a message. Only the patched layer raises this hook, and waits for it."""
        kind, payload = flow.metadata.pop(self._WS_CONTROL, ("control frame", b""))
        try:
            await self._ws_check(flow, payload, f"WebSocket {kind}", None)
        except Exception as e:  # noqa: BLE001 - the patched layer would pass the frame on
            self._ws_refuse(flow, None, 1011, f"internal error in the addon ({type(e).__name__}); failing closed")

    async def _ws_check(self, flow: http.HTTPFlow, data: bytes, what: str, message: Any | None) -> None:
        """Placeholders and the DLP scan for what the client sends: a refusal drops `message` (if any) and
        closes the WebSocket."""
        req = flow.request
        mode = flow.metadata.get(MODE) or self.policy.dlp.mode(req.host)
        secret = self._misplaced(flow, data.decode("latin-1"), None)  # frames are never injected
        if secret is not None:
            return self._ws_refuse(flow, message, 1008, f"{what}: {pol.placeholder_rule(secret, req.host, req.scheme)}",
                                   kind="placeholder", secret=secret.name)
        if mode == "skip" or not data:
            return
        where = {**self._ws_where(flow), "mode": mode}
        if len(data) > dlp.MAX_SCAN_BYTES:
            reason = f"{what} of {len(data)} bytes is over the {dlp.MAX_SCAN_BYTES}-byte DLP scan limit"
            if mode == "scan":
                return self._ws_refuse(flow, message, 1009, f"{reason} (failing closed)", kind="dlp_error", mode=mode)
            return emit("warning", kind="dlp_limit", reason=f"{reason}: not scanned", **where)
        text = dlp.mask(data, self.placeholders)
        if mode == "warn":
            await self._ws_detect(flow, message, data, what, mode, where)
            if len(self.background) >= MAX_BACKGROUND:
                return emit("warning", kind="dlp_error", reason=f"{what} not scanned: the scanner is busy", **where)
            task = asyncio.get_running_loop().create_task(self._warn_result(text, where))
            self.background.add(task)
            task.add_done_callback(self.background.discard)
            return
        result = await self.scanner.scan(text)
        if result.verdict == "leak":
            self._ws_refuse(flow, message, 1008, f"{what}: secret detected by gitleaks: {', '.join(result.rules)}",
                            kind="dlp", rules=list(result.rules), mode=mode)
        elif result.verdict != "clean":
            self._ws_refuse(flow, message, 1011, f"{what}: DLP scan failed: {result.reason} (failing closed)",
                            kind="dlp_error", mode=mode)
        else:  # after gitleaks, as for requests: what both catch is named by gitleaks' rule id
            await self._ws_detect(flow, message, data, what, mode, where)

    async def _ws_detect(self, flow: http.HTTPFlow, message: Any | None, data: bytes, what: str, mode: str,
                         where: dict[str, Any]) -> None:
        findings = await asyncio.to_thread(detect.scan, "", [], data, placeholders=self.placeholders)
        if not findings:
            return
        rules = sorted({f.rule for f in findings})
        reason = f"{what}: sensitive data found: {'; '.join(f.describe() for f in findings[:4])}"
        if mode == "scan":
            return self._ws_refuse(flow, message, 1008, reason, kind="dlp", rules=rules, mode=mode)
        emit("warning", kind="dlp", rules=rules, reason=f"{reason} (passed: warn mode)", **where)

    @staticmethod
    def _ws_where(flow: http.HTTPFlow) -> dict[str, Any]:
        req = flow.request
        return {"host": req.host, "port": req.port, "method": req.method, "scheme": "wss" if req.scheme == "https"
                else "ws"}

    @classmethod
    def _ws_close_later(cls, flow: http.HTTPFlow, code: int, reason: str, **fields: Any) -> None:
        """Log the refusal and have the WebSocket closed, both ways, with `code` (the patched layer does it
        once the current hook is done); the client's close frame says why."""
        fields = {**cls._ws_where(flow), **fields}
        emit("blocked", reason=f"{reason}; the WebSocket is closed ({code})", **fields)
        flow.metadata[cls._WS_CLOSE] = (code, f"claude-bottle: blocked: {reason}")

    def _ws_refuse(self, flow: http.HTTPFlow, message: Any | None, code: int, reason: str, **fields: Any) -> None:
        if message is not None:
            message.drop()
        self._ws_close_later(flow, code, reason, **fields)

    @classmethod
    def _patch_websocket_layer(cls) -> bool:
        """mitmproxy 8.1.1's WebSocket layer, with what no hook can do:

        - Close on a refusal: a hook can drop a message, but flow.kill() does nothing to a WebSocket and no
          API closes one. After the hook that asked for it, both sides get a close frame with its code and
          the connection ends, as when a side closes.
        - Bound memory: wsproto inflates permessage-deflate data unbounded, and mitmproxy holds a message
          whole until it ends. Data under deflate is fed to wsproto in small pieces, and a message
          that outgrows its limit (while it is still arriving) closes the WebSocket with 1009. The frame
          being read grows in place (mitmproxy's `bytes +=` copies it whole for every piece of data).
        - Control frames carry data too: a client's ping or pong with a payload is held back and checked
          by the claude_bottle_websocket_control hook before it is passed on, and the reason in a
          client's close frame to a scan host is dropped (its code is kept).
        True when patched (now or before); False when this mitmproxy is not 8.1.
        """
        import time
        from dataclasses import dataclass

        import wsproto.events
        from mitmproxy import version
        from mitmproxy.proxy import commands, events
        from mitmproxy.proxy.layers import websocket as ws_layer
        from wsproto import ConnectionState

        layer_cls: Any = ws_layer.WebsocketLayer
        if getattr(layer_cls, "_claude_bottle_patched", False):
            return True
        if not version.VERSION.startswith("8.1."):
            return False
        relay = layer_cls.relay_messages

        @dataclass
        class ClaudeBottleWebsocketControlHook(commands.StartHook):
            flow: http.HTTPFlow  # the frame's kind and payload are in its metadata: hooks take one argument
            name = "claude_bottle_websocket_control"

        def holding(ws: Any, held: list[Any], strip_reasons: bool) -> Any:
            for ev in type(ws).events(ws):
                if isinstance(ev, (wsproto.events.Ping, wsproto.events.Pong)) and ev.payload:
                    held.append(ev)
                elif strip_reasons and isinstance(ev, wsproto.events.CloseConnection) and ev.reason:
                    yield wsproto.events.CloseConnection(ev.code)
                else:
                    yield ev

        def pass_held(self: Any, held: list[Any]) -> Any:
            for ev in held:
                if self.flow.metadata.get(cls._WS_CLOSE):
                    return
                self.flow.metadata[cls._WS_CONTROL] = (type(ev).__name__.lower(), bytes(ev.payload))
                yield ClaudeBottleWebsocketControlHook(self.flow)
                if not self.flow.metadata.get(cls._WS_CLOSE):
                    yield self.server_ws.send2(ev)

        def pieces(self: Any, event: Any) -> Any:
            deflate = "permessage-deflate" in self.flow.response.headers.get("sec-websocket-extensions", "").lower()
            if not (isinstance(event, events.DataReceived) and deflate and len(event.data) > cls.WS_PIECE):
                yield event
                return
            for i in range(0, len(event.data), cls.WS_PIECE):
                yield events.DataReceived(event.connection, event.data[i : i + cls.WS_PIECE])

        def over_limit(self: Any, event: Any) -> None:
            from_client = event.connection == self.context.client
            buf = (self.client_ws if from_client else self.server_ws).frame_buf
            limit = self.flow.metadata.get(cls._WS_LIMIT, cls.WS_MAX_MESSAGE) if from_client else cls.WS_MAX_MESSAGE
            if sum(map(len, buf)) + 64 * len(buf) > limit:  # 64: what each fragment costs beside its bytes
                who = "client" if from_client else "server"
                scan = from_client and limit == dlp.MAX_SCAN_BYTES
                cls._ws_close_later(self.flow, 1009, f"a WebSocket message from the {who} is over the {limit}-byte "
                                    f"{'DLP scan' if scan else 'message'} limit{' (failing closed)' if scan else ''}",
                                    kind="dlp_error" if scan else "websocket")

        def close(self: Any) -> Any:
            code, reason = self.flow.metadata[cls._WS_CLOSE]
            for ws, why in ((self.server_ws, "policy violation"), (self.client_ws, reason)):
                if ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                    yield ws.send2(wsproto.events.CloseConnection(code, why))  # reason cut to 123 bytes
                yield commands.CloseConnection(ws.conn)
                ws.frame_buf = [b""]  # a message cut short is not kept
            data = self.flow.websocket
            data.timestamp_end, data.closed_by_client = time.time(), False
            data.close_code, data.close_reason = code, reason
            yield ws_layer.WebsocketEndHook(self.flow)
            self.flow.live = False
            self._handle_event = self.done

        def relay_messages(self: Any, event: Any) -> Any:
            for piece in pieces(self, event):
                for ws in (self.client_ws, self.server_ws):
                    if type(ws.frame_buf[-1]) is bytes:  # grown in place, not copied whole for every piece
                        ws.frame_buf[-1] = bytearray(ws.frame_buf[-1])
                held: list[Any] = []
                if isinstance(piece, events.DataReceived) and piece.connection == self.context.client:
                    strip = self.flow.metadata.get(MODE) == "scan"
                    self.client_ws.events = lambda: holding(self.client_ws, held, strip)
                try:
                    yield from relay(self, piece)
                finally:
                    self.client_ws.__dict__.pop("events", None)
                if self._handle_event != self.relay_messages:
                    return  # a side closed it
                yield from pass_held(self, held)
                if isinstance(piece, events.DataReceived) and not self.flow.metadata.get(cls._WS_CLOSE):
                    over_limit(self, piece)
                if self.flow.metadata.get(cls._WS_CLOSE):
                    yield from close(self)
                    return

        layer_cls.relay_messages = relay_messages
        layer_cls._claude_bottle_patched = True
        return True
