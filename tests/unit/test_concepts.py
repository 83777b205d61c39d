"""docs/concepts.md points at the exact lines that show each idea: the links stay true."""

import re

from btc_core.settings import PROJECT_ROOT

PAGE = PROJECT_ROOT / "docs" / "concepts.md"
LINK = re.compile(
    r"\[`(?P<path>[^`:]+):(?P<line>\d+)`\]\(\.\./(?P=path)#L(?P=line)\) `(?P<quote>[^`]+)`"
)
TAUGHT = (  # the course's ideas (issue #18), each on the map at least once
    "flow", "task", "deployment", "work pool", "worker", "hybrid", "asset", "materialization",
    "staleness", "lineage", "cron schedule", "interval schedule", "event trigger", "secrets",
    "retries", "caching",
)  # fmt: skip


def rows() -> list[tuple[str, re.Match[str]]]:
    """(idea, its link): each idea is a ``###`` heading, its explanation, then ``Where:`` a link."""
    found, idea = [], ""
    for line in PAGE.read_text().splitlines():
        if line.startswith("### "):
            idea = line.removeprefix("### ").strip()
        elif match := LINK.search(line):
            found.append((idea, match))
    return found


def test_every_link_lands_on_the_line_it_quotes():
    stale = []
    for idea, link in rows():
        lines = (PROJECT_ROOT / link["path"]).read_text().splitlines()
        number = int(link["line"])
        if number > len(lines) or link["quote"] not in lines[number - 1]:
            now = [i + 1 for i, text in enumerate(lines) if link["quote"] in text]
            stale.append(f"{idea}: {link['path']}:{number} is not `{link['quote']}` (now {now})")
    assert not stale, (
        "docs/concepts.md is stale (python -m tests.unit.test_concepts):\n" + "\n".join(stale)
    )


def test_every_idea_of_the_course_is_on_the_map():
    ideas = {idea for idea, _ in rows()}
    assert set(TAUGHT) <= ideas, set(TAUGHT) - ideas


def relink() -> None:
    """Point each stale link at the one line that now holds its quote (run after moving code)."""

    def moved(link: re.Match[str]) -> str:
        lines = (PROJECT_ROOT / link["path"]).read_text().splitlines()
        now = [i + 1 for i, text in enumerate(lines) if link["quote"] in text]
        if len(now) != 1:
            return link[0]  # gone or ambiguous: the test names it, a person decides
        old = link["line"]
        return link[0].replace(f":{old}`", f":{now[0]}`").replace(f"#L{old})", f"#L{now[0]})")

    PAGE.write_text(LINK.sub(moved, PAGE.read_text()))


if __name__ == "__main__":  # python -m tests.unit.test_concepts
    relink()
