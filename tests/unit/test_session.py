"""session.guarded: every exit path of a session body runs its cleanup, shielded from signals."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import unittest

from claude_bottle import session


class GuardedTest(unittest.TestCase):
    def run_guarded(self, body, cleanup):  # type: ignore[no-untyped-def]
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                code = session.guarded(body, cleanup)
            except Exception as exc:  # noqa: BLE001 - the test inspects it
                return exc, err.getvalue()
        return code, err.getvalue()

    def test_body_status_and_cleanup(self) -> None:
        ran: list[str] = []
        code, _ = self.run_guarded(lambda: 7, lambda: ran.append("x") or [])
        self.assertEqual((code, ran), (7, ["x"]))

    def test_signal_in_body_gives_128_plus_n_and_cleans_up(self) -> None:
        ran: list[str] = []

        def body() -> int:
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("the signal should have interrupted the body")

        code, err = self.run_guarded(body, lambda: ran.append("x") or [])
        self.assertEqual((code, ran), (143, ["x"]))
        self.assertIn("stopped by signal 15", err)

    def test_signal_during_cleanup_is_ignored(self) -> None:
        finished: list[str] = []

        def cleanup() -> list[str]:
            os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C while removing things
            finished.append("done")
            return []

        before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs under nohup or in the background
        code, _ = self.run_guarded(lambda: 0, cleanup)
        self.assertEqual((code, finished), (0, ["done"]))
        self.assertIs(signal.getsignal(signal.SIGINT), before)

    def test_body_error_still_cleans_up_and_propagates(self) -> None:
        ran: list[str] = []

        def body() -> int:
            raise RuntimeError("boom")

        exc, _ = self.run_guarded(body, lambda: ran.append("x") or [])
        self.assertIsInstance(exc, RuntimeError)
        self.assertEqual(ran, ["x"])

    def test_cleanup_problems_and_errors_are_reported(self) -> None:
        _, err = self.run_guarded(lambda: 0, lambda: ["network busy"])
        self.assertIn("cleanup: network busy", err)

        def broken() -> list[str]:
            raise ValueError("bug")

        code, err = self.run_guarded(lambda: 3, broken)
        self.assertEqual(code, 3)
        self.assertIn("cleanup: ValueError: bug", err)

    def test_a_failed_save_never_stops_the_removal(self) -> None:
        removed: list[str] = []

        def save() -> None:
            raise OSError("disk full")

        problems = session.save_then(save, lambda: removed.append("all") or [])
        self.assertEqual(removed, ["all"])
        self.assertIn("disk full", problems[0])


if __name__ == "__main__":
    unittest.main()
