"""The addon's response hooks, a mixin of addon.Gate: scrubbing real values out of what a secret's
hosts send back (heads, bodies, streams, trailers), undoing compression on the way, and the
version-gated patch of mitmproxy 8.1.1's HTTP/1 client that trailers and 1xx replies need.
The state it reads (policy, values, placeholders) is the Gate's."""

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

from mitmproxy import connection, ctx, http  # noqa: E402

from verdicts import STREAM_OVER  # noqa: E402


class ResponseHooks:
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        assert flow.response is not None
        headers = flow.response.headers
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        length = headers.get("content-length", "").strip()
        # SSE must reach the client event by event or streamed LLM replies stall.
        if ctype == "text/event-stream" or (length.isdigit() and int(length) > STREAM_OVER):
            flow.response.stream = True
        if not self._scrubbed(flow):
            return
        try:
            self._scrub_head(flow, flow.response)
            if flow.response.stream:
                self._stream_scrubbed(flow, flow.response)
        except Exception as e:  # noqa: BLE001 - mitmproxy would pass the reply on as it is
            self._refuse_reply(flow, f"internal error in the addon ({type(e).__name__}); failing closed", True)

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.request.method == "CONNECT":
            return self._connect_reply(flow)
        resp = flow.response
        if resp is None:
            return
        if flow.metadata.get(self._REFUSED):
            resp.trailers = None  # our 502 carries nothing of the server's
            return
        try:
            if 100 <= resp.status_code < 200 and resp.status_code != 101:
                # Only when _patch_http1_client could not skip it: 8.1.1 took this head for the final reply,
                # which is lost, so say so rather than hand the agent an empty 1xx as the answer.
                return self._refuse_reply(flow, f"the server sent an informational {resp.status_code} response, "
                                                "which this mitmproxy takes for the final one", False)
            scrubbed = self._scrubbed(flow)
            self._trailers(flow, resp, scrubbed)
            if resp.stream or not scrubbed:
                return
            # A server that echoes what it got (an error page quoting the key) must not hand the agent the value.
            self._scrub_head(flow, resp)
            try:
                content = resp.get_content(strict=True)  # gzip, deflate, br, zstd: mitmproxy's own decoders
            except ValueError:
                coding = resp.headers.get("content-encoding", "")
                return self._refuse_reply(flow, f"cannot decode the response's Content-Encoding {coding!r} to keep "
                                                "secret values out of it (failing closed)", False)
            if content:
                clean = dlp.scrub(content, self._pairs(flow))
                if clean != content:
                    had_length = "content-length" in resp.headers
                    resp.set_content(clean)  # re-encoded as it came, and given a content-length
                    if resp.trailers and not had_length:
                        # HTTP/2, framed by its end of stream: clients such as curl stop at a content-length
                        # and miss the trailers after it (gRPC's status lives there).
                        resp.headers.pop("content-length", None)
        except Exception as e:  # noqa: BLE001 - mitmproxy would pass the reply on as it is
            reason = f"internal error in the addon ({type(e).__name__}); failing closed"
            if resp.stream:  # its head and body have left already: cut it
                self._stream_failed(flow, reason)
            else:
                self._refuse_reply(flow, reason, False)

    def _scrubbed(self, flow: http.HTTPFlow) -> bool:
        return bool(self.scrub_pairs) and pol.normalize_host(flow.request.host) in self.bound_hosts

    _REFUSED = "claude_bottle_reply_refused"
    _PAIRS = "claude_bottle_scrub_pairs"

    def _pairs(self, flow: http.HTTPFlow) -> list[tuple[bytes, bytes]]:
        """What to scrub from this flow's reply: the real values, their base64 forms, and the exact Basic
        tokens _inject sent (read back from the request as it left, so every injected form is covered)."""
        pairs = flow.metadata.get(self._PAIRS)
        if pairs is None:
            sent = [value for _, value in flow.request.headers.fields]
            pairs = flow.metadata[self._PAIRS] = dlp.response_pairs(self.scrub_pairs, sent)
        return pairs

    def _scrub_fields(self, flow: http.HTTPFlow, fields: tuple[tuple[bytes, bytes], ...]
                      ) -> tuple[tuple[bytes, bytes], ...]:
        pairs = self._pairs(flow)

        def name(key: bytes) -> bytes:
            clean = dlp.scrub(key, pairs)
            return key if clean == key else clean.lower()  # HTTP/2 refuses upper case (trailers aren't normalized)

        return tuple((name(k), dlp.scrub(v, pairs)) for k, v in fields)

    def _scrub_head(self, flow: http.HTTPFlow, resp: http.Response) -> None:
        """The status line's reason phrase, and header names as well as values."""
        resp.data.reason = dlp.scrub(resp.data.reason, self._pairs(flow))
        resp.headers.fields = self._scrub_fields(flow, resp.headers.fields)

    def _trailers(self, flow: http.HTTPFlow, resp: http.Response, scrubbed: bool) -> None:
        # Runs in the response hook, before mitmproxy sends the trailers (streamed or not).
        if not resp.trailers:
            return
        if not flow.request.is_http2:
            # 8.1.1's HTTP/1 server side has no way to send them (it fails the flow on them): drop them.
            resp.trailers = None
            emit("warning", host=flow.request.host, port=flow.request.port, method=flow.request.method,
                 kind="trailers", reason="response trailers dropped (mitmproxy can't send them over HTTP/1)")
        elif scrubbed:
            resp.trailers.fields = self._scrub_fields(flow, resp.trailers.fields)

    def _stream_scrubbed(self, flow: http.HTTPFlow, resp: http.Response) -> None:
        """A streamed reply from a secret's host: decoded on the fly if compressed, then scrubbed."""
        header = resp.headers.get("content-encoding", "")
        codings = dlp.content_codings(header)
        coding = None
        if flow.request.method != "HEAD" and resp.status_code not in (204, 304):  # these have no body
            if codings and (len(codings) != 1 or codings[0] not in dlp.STREAM_CODINGS):
                # br and zstd need libraries outside the stdlib, and an unknown coding can't be read at all.
                # Passing the bytes on would let the agent inflate what the scrubber never saw, and a stream
                # (SSE) can't be buffered to decode later. No byte of the body has left yet, so the agent gets
                # a plain 502 now, which it can act on, rather than a body cut at some random point.
                return self._refuse_reply(flow, f"the streamed response is compressed as {header!r}, which the "
                                                "proxy cannot decode to keep secret values out of it (failing "
                                                "closed)", True)
            if codings:
                coding = codings[0]
                del resp.headers["content-encoding"]  # passed on decoded
            # A scrubbed value is not as long as the real one, and a decoded body not as long as it was sent:
            # the server's length would be wrong (and too short a one spills into the next reply).
            resp.headers.pop("content-length", None)
            chunked = "chunked" in resp.headers.get("transfer-encoding", "").lower()
            if flow.request.http_version == "HTTP/1.1" and resp.http_version != "HTTP/1.0" and not chunked:
                # Rather than delimited by closing the connection, where a reply cut by _stream_failed would
                # look whole (an HTTP/1.0 reply can't be chunked, so it stays that way).
                resp.headers["transfer-encoding"] = "chunked"
        resp.stream = dlp.ResponseStream(self._pairs(flow), coding, lambda reason: self._stream_failed(flow, reason))

    def _stream_failed(self, flow: http.HTTPFlow, reason: str) -> None:
        """Mid-stream, the head has left: nothing more is passed on, and when the server's reply ends
        mitmproxy sees the kill and closes the agent's connection, short of the end of the body."""
        emit("blocked", host=flow.request.host, port=flow.request.port, method=flow.request.method, kind="response",
             reason=f"{reason}; the rest of the response is dropped and the reply cut (failing closed)")
        if flow.killable:
            flow.kill()

    def _refuse_reply(self, flow: http.HTTPFlow, reason: str, before_body: bool) -> None:
        """Answer the agent with a 502 instead of the server's reply (not sent yet)."""
        emit("blocked", host=flow.request.host, port=flow.request.port, method=flow.request.method, kind="response",
             reason=reason)
        reply = refusal(502, f"claude-bottle: blocked: {reason}")
        if not flow.request.is_http2:
            reply.headers["connection"] = "close"  # the server's reply may still be arriving on this flow
        if before_body:
            # From responseheaders: mitmproxy still reads the server's body into flow.response, so stream
            # it into nothing and send our own body instead.
            reply.stream = dlp.Replacement(reply.raw_content or b"")
        flow.response = reply
        flow.metadata[self._REFUSED] = True

    def load(self, loader: Any) -> None:
        self._patch_http1_client()

    @staticmethod
    def _patch_http1_client() -> None:
        """Two legal replies that mitmproxy 8.1.1's HTTP/1 client side (reading servers) mishandles, where
        no hook can help: it parses the body as it arrives, without waiting for the responseheaders hook.

        - Trailers after a chunked body: read_body raises NotImplementedError and the flow hangs. They are
          dropped here. (An HTTP/1 server always has an HTTP/1 client: mitmproxy offers the agent the ALPN
          the server chose, and 8.1.1 cannot send trailers over HTTP/1 anyway.)
        - A 1xx informational head (103 Early Hints; 100 or 102): taken for the final reply, which is lost.
          Skipped here, as mitmproxy's own HTTP/2 layer does (101 is left alone).
        If this mitmproxy is not 8.1, nothing is patched; response() then answers a 1xx with a clear 502.
        """
        import h11
        from mitmproxy import version
        from mitmproxy.proxy import events
        from mitmproxy.proxy.layers.http import _http1

        client: Any = _http1.Http1Client
        if getattr(client, "_claude_bottle_patched", False):
            return
        if not version.VERSION.startswith("8.1."):
            emit("warning", kind="mitmproxy", reason=f"mitmproxy {version.VERSION} is not 8.1: HTTP/1 trailers and "
                                                     "1xx replies are left to it")
            return
        informational = re.compile(rb"HTTP/\d\.\d 1(\d\d)[ \r]")
        read_headers, read_body = client.read_headers, client.read_body

        def where(conn: connection.Server) -> dict[str, Any]:
            host, port = conn.address or (None, None)
            return {"host": host, "port": port}

        class DropTrailers:
            def __init__(self, reader: Any, conn: connection.Server) -> None:
                self.reader, self.conn = reader, conn

            def __call__(self, buf: Any) -> Any:
                return self.end(self.reader(buf))

            def read_eof(self) -> Any:
                return self.end(self.reader.read_eof())

            def end(self, event: Any) -> Any:
                if isinstance(event, h11.EndOfMessage) and event.headers:
                    emit("warning", kind="trailers", reason="HTTP/1 response trailers dropped", **where(self.conn))
                    return h11.EndOfMessage()
                return event

        def patched_read_body(self: Any, event: Any) -> Any:
            if not isinstance(self.body_reader, DropTrailers):
                self.body_reader = DropTrailers(self.body_reader, self.conn)
            yield from read_body(self, event)

        def patched_read_headers(self: Any, event: Any) -> Any:
            if isinstance(event, events.DataReceived) and self.request is not None:
                while (m := informational.match(bytes(self.buf)[:16])) and m.group(1) != b"01":
                    # Not logged: CDNs send 103 Early Hints routinely, and skipping one loses nothing.
                    if self.buf.maybe_extract_lines() is None:
                        return  # the rest of that head is still to come
            yield from read_headers(self, event)

        client.read_headers, client.read_body = patched_read_headers, patched_read_body
        client._claude_bottle_patched = True
