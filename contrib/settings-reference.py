#!/usr/bin/env python3
"""Rewrites the "Settings reference" section of README.md from config/default.toml.

Each key's comment lines (those directly above it, or after it on the same line) become its
description. Run from the repository root after changing config/default.toml; the test
tests/readme.rs fails when a key is missing from README.md.
"""
import re
import tomllib

lines = open("config/default.toml", encoding="utf-8").read().splitlines()
defaults = tomllib.loads("\n".join(lines))
rows, comments, section, previous = [], [], None, None
for line in lines:
    stripped = line.strip()
    if stripped.startswith("#"):
        comments.append(stripped.lstrip("#").strip())
        continue
    header = re.match(r"^\[([a-z_.]+)\]$", stripped)
    if header:
        section, comments = header.group(1), []
        continue
    item = re.match(r"^([a-z_]+)\s*=", stripped)
    if item and section and section != "councils":
        key = item.group(1)
        value = defaults[section][key]
        shown = f'"{value}"' if isinstance(value, str) else str(value).lower()
        text = " ".join(c for c in comments if c).replace("|", "\\|")
        if text:
            previous = f"{section}.{key}"
        else:
            text = f"See `{previous}`."
        rows.append(f"| `{section}.{key}` | `{shown}` | {text} |")
    comments = [] if not stripped.startswith("#") else comments
table = "\n".join(
    ["| key | default | meaning |", "| --- | --- | --- |"]
    + rows
    + ["| `councils.<slug>.base_url` | registry | replaces the registry's committee-system base |",
       "| `councils.<slug>.feeds` | `[]` | RSS, Atom or iCalendar feed URLs to add |",
       "| `councils.<slug>.support` | none | pins the support level (`full` or `limited`) |"]
)
readme = open("README.md", encoding="utf-8").read()
start = readme.index("## Settings reference")
readme = readme[:start] + "## Settings reference\n\n" + \
    "Generated from `config/default.toml` by `contrib/settings-reference.py`.\n\n" + table + "\n"
open("README.md", "w", encoding="utf-8").write(readme)
