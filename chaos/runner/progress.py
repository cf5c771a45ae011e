"""Progress lines: every few seconds on stderr (unless quiet), and always into the run's ``run.log``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TextIO

from chaos.runner.recorder import Recorder


class Progress:
    """Says what the run is doing: the phase, op counts, and the fault in place (by its name)."""

    def __init__(self, recorder: Recorder, out: TextIO | None, log: Path | None = None) -> None:
        self.recorder = recorder
        self.out = out
        self.phase = "starting"
        self.fault = ""
        self._log = open(log, "a", encoding="utf-8") if log is not None else None  # noqa: SIM115 - closed in close()

    def say(self, text: str) -> None:
        line = f"[{self.recorder.elapsed():6.1f}s] {text}"
        if self.out is not None:
            print(line, file=self.out, flush=True)
        if self._log is not None:
            self._log.write(line + "\n")
            self._log.flush()

    def status_line(self) -> str:
        c = self.recorder.counts()
        fault = f"; fault: {self.fault}" if self.fault else ""
        return f"{self.phase}: {sum(c.values())} ops done (ok {c['ok']}, fail {c['fail']}, info {c['info']}){fault}"

    async def loop(self, every: float = 5.0) -> None:
        while True:
            await asyncio.sleep(every)
            self.say(self.status_line())

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
