#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Structural checks of packaging/container/Dockerfile.

There is no container engine on the test machines and hadolint is not in
Debian, so the Dockerfile is parsed here the way BuildKit reads it (parser
directives, comments, line continuations, instructions) and checked for
what would break a build or the image:

- every instruction is a known one, and the file starts with FROM (after
  ARG and parser directives);
- stage names are unique, and COPY --from= / FROM <stage> name a stage
  defined earlier;
- every COPY/ADD source without --from exists in the build context (the
  top of the source tree);
- with --root DIR (a tree laid out as `make install DESTDIR=/out` with
  --prefix=/usr --sysconfdir=/etc leaves it, such as an unpacked .deb),
  every `COPY --from=build /out/...` source exists under DIR;
- ENTRYPOINT and CMD are in exec (JSON array) form;
- with --binary BIN, the runtime stage installs the Debian package of each
  shared library BIN needs (objdump NEEDED, dpkg -S);
- the build stage installs every library -dev package debian/control
  build-depends on, so the two builds cannot drift apart.

Usage: check_dockerfile.py SRCDIR [--root DIR] [--binary BIN]
Exit status 0 when every check passes, 1 otherwise (each problem printed).
"""

import argparse
import glob
import json
import os
import re
import shlex
import subprocess
import sys

INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM",
    "HEALTHCHECK", "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL",
    "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}
DIRECTIVE = re.compile(r"^#\s*([a-zA-Z]+)\s*=\s*(.*)$")


class Problems:
    """Collects failed checks, so that one run reports all of them."""

    def __init__(self):
        self.items = []

    def add(self, where, what):
        self.items.append(f"{where}: {what}")


def instructions(path):
    """(line number, KEYWORD, arguments) for each instruction in path."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    escape = "\\"
    i = 0
    # Parser directives come first, before any comment or instruction.
    while i < len(lines):
        m = DIRECTIVE.match(lines[i])
        if not m:
            break
        if m.group(1).lower() == "escape":
            escape = m.group(2).strip()
        i += 1
    out = []
    while i < len(lines):
        start = i
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        text = line
        # A trailing escape continues the instruction; comment lines
        # inside a continued instruction are dropped, as BuildKit does.
        while text.rstrip().endswith(escape) and i < len(lines):
            text = text.rstrip()[:-1]
            nxt = lines[i]
            i += 1
            if nxt.lstrip().startswith("#"):
                text += " "
                continue
            text += " " + nxt
        keyword, _, args = text.strip().partition(" ")
        out.append((start + 1, keyword, args.strip()))
    return out


def split_flags(args):
    """(--flags dict, remaining words) of a COPY/ADD/FROM argument string."""
    words = shlex.split(args)
    flags = {}
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        flags[name] = value
    return flags, words


def is_exec_form(args):
    try:
        value = json.loads(args)
    except ValueError:
        return False
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check_structure(path, srcdir, root, problems):
    """The instruction-level checks; returns {stage name: [RUN args]}."""
    name = os.path.relpath(path, srcdir)
    insts = instructions(path)
    if not insts:
        problems.add(name, "no instructions")
        return {}
    seen_from = False
    stages = []          # names (or None) in order
    runs = {}            # stage label -> RUN argument strings
    current = None
    for lineno, keyword, args in insts:
        where = f"{name}:{lineno}"
        if keyword != keyword.upper() or keyword not in INSTRUCTIONS:
            problems.add(where, f"unknown instruction {keyword!r}")
            continue
        if keyword == "FROM":
            seen_from = True
            flags, words = split_flags(args)
            if len(words) not in (1, 3) or (
                    len(words) == 3 and words[1].upper() != "AS"):
                problems.add(where, f"FROM {args!r}: expected IMAGE "
                             "[AS NAME]")
                continue
            stage = words[2] if len(words) == 3 else None
            if stage is not None and stage in stages:
                problems.add(where, f"stage {stage!r} defined twice")
            stages.append(stage)
            current = stage if stage is not None else f"#{len(stages) - 1}"
            runs[current] = []
            continue
        if not seen_from and keyword != "ARG":
            problems.add(where, f"{keyword} before the first FROM")
            continue
        if keyword == "RUN":
            runs[current].append(args)
        elif keyword in ("ENTRYPOINT", "CMD"):
            if not is_exec_form(args):
                problems.add(where, f"{keyword} is not in exec form "
                             "(a JSON array): signals would go to a shell")
        elif keyword in ("COPY", "ADD"):
            check_copy(where, keyword, args, stages, srcdir, root, problems)
    if not seen_from:
        problems.add(name, "no FROM")
    return runs


def check_copy(where, keyword, args, stages, srcdir, root, problems):
    flags, words = split_flags(args)
    if words and words[0].startswith("["):
        words = json.loads(args[args.index("["):])
    if len(words) < 2:
        problems.add(where, f"{keyword} needs a source and a destination")
        return
    sources = words[:-1]
    source_stage = flags.get("from")
    if source_stage is not None:
        if source_stage not in stages[:-1]:
            problems.add(where, f"--from={source_stage} names no earlier "
                         "stage")
            return
        if root is None:
            return
        for src in sources:
            # The build stage installs with DESTDIR=/out.
            if not src.startswith("/out/"):
                problems.add(where, f"{src}: expected a path under /out")
            elif not os.path.exists(os.path.join(root, src[len("/out/"):])):
                problems.add(where, f"{src}: make install does not "
                             f"install {src[len('/out'):]}")
        return
    for src in sources:
        matches = glob.glob(os.path.join(srcdir, src))
        if not matches:
            problems.add(where, f"{keyword} source {src!r} is not in the "
                         "build context (the top of the source tree)")


def apt_packages(run_args):
    """Package names given to apt-get install in a list of RUN strings."""
    pkgs = set()
    for args in run_args:
        for m in re.finditer(r"apt-get\s+install\s+([^&|;]*)", args):
            for word in m.group(1).split():
                if not word.startswith("-"):
                    pkgs.add(word)
    return pkgs


def needed_packages(binary):
    """Debian packages of the shared libraries binary links."""
    out = subprocess.run(["objdump", "-p", binary], check=True,
                         capture_output=True, text=True).stdout
    sonames = re.findall(r"^\s*NEEDED\s+(\S+)", out, re.M)
    pkgs = {}
    for soname in sonames:
        res = subprocess.run(["dpkg", "-S", f"*/{soname}"],
                             capture_output=True, text=True)
        if res.returncode != 0:
            pkgs[soname] = None
            continue
        first = res.stdout.splitlines()[0]
        pkgs[soname] = first.split(":", 1)[0].split(",")[0].strip()
    return pkgs


def control_build_deps(srcdir):
    """Library -dev packages in debian/control's Build-Depends."""
    path = os.path.join(srcdir, "packaging", "debian", "control")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^Build-Depends:(.*?)(?=^\S)", text, re.M | re.S)
    deps = set()
    for item in m.group(1).split(","):
        item = re.sub(r"[(<\[].*", "", item).strip()
        if item.startswith("lib") and item.endswith("-dev"):
            deps.add(item)
    return deps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("srcdir")
    ap.add_argument("--root")
    ap.add_argument("--binary")
    opts = ap.parse_args()
    srcdir = os.path.abspath(opts.srcdir)
    path = os.path.join(srcdir, "packaging", "container", "Dockerfile")
    problems = Problems()

    runs = check_structure(path, srcdir, opts.root, problems)
    labels = list(runs)
    if len(labels) < 2:
        problems.add("Dockerfile", "expected a build stage and a runtime "
                     "stage")
    else:
        build_pkgs = apt_packages(runs[labels[0]])
        runtime_pkgs = apt_packages(runs[labels[-1]])
        for dep in sorted(control_build_deps(srcdir)):
            if dep == "libcriterion-dev":
                continue  # unit tests only; the image runs none
            if dep not in build_pkgs:
                problems.add("Dockerfile", f"the build stage does not "
                             f"install {dep} (debian/control needs it)")
        for tool in ("iptables", "conntrack", "ca-certificates"):
            if tool not in runtime_pkgs:
                problems.add("Dockerfile", f"the runtime stage does not "
                             f"install {tool}")
        if opts.binary:
            for soname, pkg in sorted(needed_packages(opts.binary).items()):
                if pkg is None:
                    problems.add("Dockerfile", f"{soname}: no Debian "
                                 "package owns it here")
                elif pkg not in runtime_pkgs and pkg != "libc6":
                    problems.add("Dockerfile", f"the runtime stage does "
                                 f"not install {pkg} ({soname})")

    for p in problems.items:
        print(f"check_dockerfile: {p}")
    if problems.items:
        return 1
    print("check_dockerfile: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
