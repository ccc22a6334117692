#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Check that kuproxy(8) and `kuproxy --help` agree.

help2man builds the manual from --help, so they agree by construction;
this catches a stale shipped page, a broken include file, or a flag that
the include file's prose (configuration file, examples) names but the
program does not have.

- every --flag in --help appears in the manual, and every --flag in the
  manual is in --help (lines that quote other programs' command lines,
  such as kubectl, are left out);
- every short flag (-v) in --help appears in the manual;
- the manual has the sections the include file adds, and its .TH line
  carries the version that --version prints.

Usage: check_manpage.py KUPROXY MANPAGE (roff, or roff.gz)
"""

import gzip
import re
import subprocess
import sys

SECTIONS = ("NAME", "SYNOPSIS", "DESCRIPTION", "CONFIGURATION FILE",
            "SIGNALS", "EXIT STATUS", "ENVIRONMENT", "FILES", "SEE ALSO")
LONG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]")
SHORT = re.compile(r"(?<![\w-])-[a-zA-Z](?![\w-])")
OTHER_PROGRAMS = ("kubectl ",)


def roff_text(roff):
    """The words of a roff page, with font changes and escapes removed."""
    text = roff.replace("\\-", "-").replace("\\(hy", "-")
    text = re.sub(r"\\f(\[[^]]*\]|\(..|.)", "", text)
    text = re.sub(r"\\[,/&:]", "", text)
    return text


def main(argv):
    if len(argv) != 3:
        print("usage: check_manpage.py KUPROXY MANPAGE", file=sys.stderr)
        return 2
    binary, page = argv[1], argv[2]
    help_text = subprocess.run([binary, "--help"], check=True,
                               capture_output=True, text=True).stdout
    version = subprocess.run([binary, "--version"], check=True,
                             capture_output=True, text=True
                             ).stdout.split()[1]
    opener = gzip.open if page.endswith(".gz") else open
    with opener(page, "rt", encoding="utf-8") as f:
        man = roff_text(f.read())

    problems = []
    man_lines = [l for l in man.splitlines()
                 if not l.lstrip().startswith(OTHER_PROGRAMS)]
    man_long = set(LONG.findall("\n".join(man_lines)))
    help_long = set(LONG.findall(help_text))
    for flag in sorted(help_long - man_long):
        problems.append(f"{flag} is in --help but not in the manual")
    for flag in sorted(man_long - help_long):
        problems.append(f"{flag} is in the manual but not in --help")
    for flag in sorted(set(SHORT.findall(help_text))):
        if flag not in man:
            problems.append(f"{flag} is in --help but not in the manual")

    headings = re.findall(r'^\.SH\s+"?([^"\n]*)"?\s*$', man, re.M)
    for section in SECTIONS:
        if section not in headings:
            problems.append(f"no {section} section")
    th = re.search(r"^\.TH\s+(.*)$", man, re.M)
    if not th or f"kuproxy {version}" not in th.group(1):
        problems.append(f".TH does not name kuproxy {version}")

    for p in problems:
        print(f"check_manpage: {page}: {p}")
    if problems:
        return 1
    print(f"check_manpage: {page}: ok ({len(help_long)} flags)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
