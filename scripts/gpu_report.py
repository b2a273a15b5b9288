"""The report of scripts/gpu_check.py: one markdown file, a summary table (one row per part: what it found, its
goal, whether it met it, its seconds) and a section of details per part, rewritten whole after every part so that
a check killed half way leaves what it measured."""

import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path


class Part:
    """One line of the report's summary, and its section: what ran, what it found, against which goal."""

    def __init__(self, title, goal=""):
        self.title, self.goal = title, goal
        self.result, self.ok, self.seconds, self.details = "not run yet", None, None, []

    def done(self, result, ok, seconds, details=()):
        self.result, self.ok, self.seconds, self.details = result, ok, seconds, list(details)


class Report:
    """The report file, rewritten whole (atomically) whenever a part finishes."""

    def __init__(self, path, mode, started, budget):
        self.path, self.mode, self.started, self.budget = Path(path), mode, started, budget
        self.environment, self.parts, self.lock = [], {}, threading.Lock()

    def part(self, key, title, goal=""):
        self.parts[key] = Part(title, goal)
        return self.parts[key]

    def write(self):
        with self.lock:
            text = self.render()
            partial = self.path.with_name(self.path.name + ".partial")
            partial.write_text(text)
            os.replace(partial, self.path)

    def render(self):
        elapsed = time.monotonic() - self.started
        mark = {True: "yes", False: "**NO**", None: "-"}
        lines = [f"# minivae GPU check ({self.mode})", "",
                 f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {elapsed:.0f} s of the {self.budget} s budget so far.",
                 "Each figure below was measured by scripts/gpu_check.py in this run (docs/gpu.md explains them).", "",
                 *[f"- {line}" for line in self.environment], "",
                 "| part | result | goal | met | seconds |", "| --- | --- | --- | --- | --- |"]
        for part in self.parts.values():
            seconds = "-" if part.seconds is None else f"{part.seconds:.0f}"
            lines.append(f"| {part.title} | {part.result} | {part.goal or '-'} | {mark[part.ok]} | {seconds} |")
        for part in self.parts.values():
            if part.details:
                lines += ["", f"## {part.title}", "", *part.details]
        return "\n".join(lines) + "\n"
