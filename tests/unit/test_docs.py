"""The documentation is true to the code and findable: every configuration key is declared once
and documented, every command-line option is documented, every link between the pages leads
somewhere. (That the README's commands and code blocks run: tests/integration/test_quick_start.py.)"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest
import yaml

from proxy.cli import build_parser
from proxy.config import Config

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "shiftguard.yaml"
REFERENCE = ROOT / "docs" / "configuration.md"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]


def declared_keys(cls=Config, prefix: str = "") -> list[str]:
    """Dotted paths of the keys proxy/config.py declares: a section (a dataclass) is a prefix,
    anything else (a value, a list, a mapping) is one key."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys += declared_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def yaml_keys(mapping: dict, sections: set[str], prefix: str = "") -> list[str]:
    keys = []
    for name, value in mapping.items():
        path = prefix + name
        if path in sections:
            keys += yaml_keys(value or {}, sections, path + ".")
        else:
            keys.append(path)
    return keys


def test_every_shipped_key_is_declared_once_and_documented():
    declared = declared_keys()
    sections = {key.rsplit(".", 1)[0] for key in declared if "." in key}
    shipped = yaml_keys(yaml.safe_load(SHIPPED.read_text()), sections)
    assert len(shipped) == len(set(shipped))
    assert sorted(shipped) == sorted(declared), "config/shiftguard.yaml and proxy/config.py differ"
    reference = REFERENCE.read_text()
    undocumented = [key for key in shipped if f"`{key}`" not in reference]
    assert undocumented == [], f"not in docs/configuration.md: {undocumented}"


def test_every_command_line_option_is_documented():
    reference = REFERENCE.read_text()
    parser = build_parser()
    (commands,) = [action for action in parser._actions if action.choices and isinstance(action.choices, dict)]
    missing = []
    for name, command in commands.choices.items():
        if f"`shiftguard {name}" not in reference:
            missing.append(name)
        missing += [f"{name} {option}" for action in command._actions for option in action.option_strings
                    if option.startswith("--") and option != "--help" and option not in reference]
    assert "`shiftguard --version`" in reference
    assert missing == []


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, seen, fenced = set(), {}, False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#+ (.*)", line)):
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [target for target in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_lead_somewhere(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists():
            broken.append(target)
        elif anchor and (destination.suffix != ".md" or anchor not in anchors(destination)):
            broken.append(target)
    assert broken == []


def test_every_docs_page_is_linked_from_the_index_and_the_readme():
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"README.md"}
    index = {Path(t.partition("#")[0]).name for t in links(ROOT / "docs" / "README.md")}
    readme = {Path(t.partition("#")[0]).name for t in links(ROOT / "README.md") if t.startswith("docs/")}
    assert pages - index == set()
    assert pages - readme == set()


def test_no_comment_points_at_a_readme_section_that_moved():
    """The README's sections moved to docs/: code says which page."""
    stale = []
    for path in [*ROOT.glob("proxy/**/*.py"), *ROOT.glob("proxy/**/*.sql"), *ROOT.glob("tests/**/*.py"),
                 *ROOT.glob("bench/*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"README[,\")]|README \"|README'?s [A-Z\"]|see README|the README says", line) and path.name != "test_docs.py":
                stale.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert stale == []
