#!/usr/bin/env python3
"""Keeps the links of README.md and docs/*.md from breaking.

For each Markdown link or image outside code, a relative target must exist (relative to the
page that links to it), and an anchor into a .md file (`#compile-time`, `page.md#anchor`) must
name one of that file's headings, by GitHub's rule: the heading's text, lower-case, without
punctuation (letters, digits, '_', '-' and spaces kept), spaces turned into '-', a repeated
heading suffixed -1, -2, ... Links to http(s) and mailto addresses are not checked.
Standard library only.

usage: check_doc_links.py SOURCE_DIR
"""
import pathlib
import re
import sys

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(text):
    """The lines outside fenced code blocks, with inline code spans blanked."""
    in_fence = False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            yield re.sub(r"`[^`]*`", lambda m: "`" + "x" * (len(m.group(0)) - 2) + "`", line)


def slug(heading):
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    found, seen = set(), {}
    in_fence = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    source = pathlib.Path(sys.argv[1]).resolve()
    pages = [source / "README.md", *sorted((source / "docs").glob("*.md"))]
    failures, checked = [], 0
    for page in pages:
        for line in prose_lines(page.read_text(encoding="utf-8")):
            for target in LINK.findall(line):
                if re.match(r"^(https?:|mailto:)", target):
                    continue
                checked += 1
                where = f"{page.relative_to(source)}: ({target})"
                file_part, _, anchor = target.partition("#")
                linked = (page.parent / file_part).resolve() if file_part else page
                if not linked.exists():
                    failures.append(f"{where}: no such file {linked}")
                    continue
                if anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                    failures.append(f"{where}: no heading #{anchor} in {linked.name}")
    for failure in failures:
        print(failure)
    print(f"{len(pages)} pages, {checked} links checked, {len(failures)} broken")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
