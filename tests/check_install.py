#!/usr/bin/env python3
"""What a packager gets, as a meson test: `meson install --destdir` into a
temporary directory, then check
1. the library: libvhu.so.X.Y.Z with soname libvhu.so.SOVERSION and the
   symlinks libvhu.so.SOVERSION and libvhu.so; libvhu.a exactly when
   -Ddefault_library is static or both, with the same global symbols;
2. the headers, <vhu/version.h> included, naming this version;
3. every installed program links libvhu.so (NEEDED), has no copy of the
   library's functions and no run path into the build tree;
4. a man page for every program, naming this version;
5. pkg-config: the version, and a program built with its flags against the
   installed headers and library runs and reports this version;
6. LICENSE and NEWS in share/doc/vhu, and the API reference when the build
   has one.
Usage: check_install.py MESON BUILD VERSION SOVERSION SANITIZE DOCS(yes|no)
Prints 'install: N passed, N failed'."""
import glob
import json
import os
import subprocess
import sys
import tempfile

meson, build, version, soversion, sanitize, docs = sys.argv[1:7]
san_flags = [f"-fsanitize={sanitize}"] if sanitize != "none" else []
cc = os.environ.get("CC", "cc")
passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {what}", file=sys.stderr)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def dynamic(path):
    """NEEDED, SONAME and RPATH/RUNPATH entries of an ELF file."""
    out = run(["readelf", "-d", path]).stdout
    entries = {"NEEDED": [], "SONAME": [], "RPATH": [], "RUNPATH": []}
    for line in out.splitlines():
        for tag in entries:
            if f"({tag})" in line and "[" in line:
                entries[tag].append(line[line.index("[") + 1:line.rindex("]")])
    return entries


def globals_of(path, dynamic_table):
    args = ["nm", "-D" if dynamic_table else "-g", "--defined-only", path]
    r = run(args)
    return {l.split()[2].split("@")[0] for l in r.stdout.splitlines()
            if len(l.split()) == 3 and l.split()[1] != "A"}


opts = {o["name"]: o["value"] for o in
        json.load(open(f"{build}/meson-info/intro-buildoptions.json"))}
kind = opts["default_library"]


def installed(opt):
    return os.path.join(opts["prefix"], opts[opt])


with tempfile.TemporaryDirectory() as dest:
    r = run([meson, "install", "-C", build, "--destdir", dest, "--no-rebuild", "--quiet"])
    check(r.returncode == 0, f"meson install failed:\n{r.stdout}{r.stderr}")

    def d(path):
        return dest + path

    libdir, bindir, incdir = d(installed("libdir")), d(installed("bindir")), d(installed("includedir"))
    mandir, docdir = d(installed("mandir")), d(os.path.join(installed("datadir"), "doc", "vhu"))

    # 1. the library
    so = f"{libdir}/libvhu.so"
    if kind != "static":
        real = f"{so}.{version}"
        check(os.path.isfile(real) and not os.path.islink(real), f"no {real}")
        check(os.path.islink(f"{so}.{soversion}") and os.readlink(f"{so}.{soversion}")
              == f"libvhu.so.{version}", f"libvhu.so.{soversion} is not a link to libvhu.so.{version}")
        check(os.path.islink(so) and os.path.realpath(so) == os.path.realpath(real),
              "libvhu.so (the development link) does not lead to the library")
        check(dynamic(real)["SONAME"] == [f"libvhu.so.{soversion}"],
              f"soname {dynamic(real)['SONAME']}, not libvhu.so.{soversion}")
        check(not glob.glob(f"{libdir}/libvhu.so.*") or
              set(map(os.path.basename, glob.glob(f"{libdir}/libvhu.so*"))) ==
              {"libvhu.so", f"libvhu.so.{soversion}", f"libvhu.so.{version}"},
              f"unexpected files: {sorted(glob.glob(f'{libdir}/libvhu.so*'))}")
    else:
        check(not glob.glob(f"{so}*"), "libvhu.so installed with -Ddefault_library=static")
    a = f"{libdir}/libvhu.a"
    check(os.path.isfile(a) == (kind != "shared"), f"libvhu.a installed: {os.path.isfile(a)}, "
          f"default_library={kind}")
    if kind == "both":
        check(globals_of(a, False) == globals_of(f"{so}.{version}", True),
              "libvhu.a and libvhu.so do not have the same global symbols")

    # 2. headers
    for h in ["vhu.h", "uring.h", "version.h", "wire.h", "error.h", "fds.h", "iov.h",
              "endpoint.h", "listener.h"]:
        check(os.path.isfile(f"{incdir}/vhu/{h}"), f"<vhu/{h}> not installed")
    if os.path.isfile(f"{incdir}/vhu/version.h"):
        check(f'#define VHU_VERSION_STRING "{version}"' in open(f"{incdir}/vhu/version.h").read(),
              f"installed version.h does not say {version}")

    # 3. programs
    programs = sorted(glob.glob(f"{bindir}/*"))
    check(len(programs) >= 4, f"programs installed: {programs}")
    for p in programs:
        name = os.path.basename(p)
        dyn = dynamic(p)
        if kind != "static":
            check(f"libvhu.so.{soversion}" in dyn["NEEDED"],
                  f"{name} does not link libvhu.so.{soversion}: NEEDED {dyn['NEEDED']}")
            own = {s for s in globals_of(p, False) | globals_of(p, True) if s.startswith("vhu_")}
            check(not own, f"{name} has its own copy of {sorted(own)[:3]}...")
        for path in dyn["RPATH"] + dyn["RUNPATH"]:
            check(os.path.abspath(build) not in path, f"{name} keeps a run path into the build: {path}")

        # 4. man pages
        man = f"{mandir}/man1/{name}.1"
        check(os.path.isfile(man), f"no man page {name}.1")
        if os.path.isfile(man):
            th = open(man).readline()
            check(th.startswith(".TH") and f'"vhu {version}"' in th, f"{name}.1: {th.strip()}")
    for man in glob.glob(f"{mandir}/man1/*.1"):
        check("@" not in open(man).read(), f"{man}: a placeholder left")

    # 5. pkg-config, and a program built with it against the installed tree
    # (the sysroot also prefixes liburing's flags: harmless, they name the
    # system's directories, which the compiler searches anyway)
    env = dict(os.environ, PKG_CONFIG_PATH=f"{libdir}/pkgconfig", PKG_CONFIG_SYSROOT_DIR=dest)
    r = run(["pkg-config", "--modversion", "vhu"], env=env)
    check(r.stdout.strip() == version, f"pkg-config --modversion vhu: {r.stdout!r} {r.stderr!r}")
    flags = run(["pkg-config", "--cflags", "--libs"] + (["--static"] if kind == "static" else [])
                + ["vhu"], env=env)
    check(flags.returncode == 0, f"pkg-config --cflags --libs vhu: {flags.stderr}")
    with open(f"{dest}/prog.c", "w") as f:
        f.write('#include <vhu/vhu.h>\n#include <vhu/uring.h>\n#include <stdio.h>\n'
                '#include <string.h>\n'
                'int main(void)\n{\n\tprintf("%s\\n", vhu_version());\n'
                '\treturn strcmp(vhu_version(), VHU_VERSION_STRING) != 0;\n}\n')
    r = run([cc, "-std=gnu11", "-Wall", "-Werror", f"{dest}/prog.c", "-o", f"{dest}/prog"]
            + flags.stdout.split() + san_flags)
    check(r.returncode == 0, f"a program does not build with pkg-config's flags:\n{r.stderr}")
    if r.returncode == 0:
        r = run([f"{dest}/prog"], env=dict(os.environ, LD_LIBRARY_PATH=libdir))
        check(r.returncode == 0 and r.stdout.strip() == version,
              f"the program says {r.stdout!r} (rc {r.returncode}, {r.stderr!r}), not {version}")

    # 6. documents
    for f in ["LICENSE", "NEWS"]:
        check(os.path.isfile(f"{docdir}/{f}"), f"{f} not installed in {docdir}")
    check(os.path.isfile(f"{docdir}/html/index.html") == (docs == "yes"),
          f"API reference installed: {os.path.isfile(f'{docdir}/html/index.html')}, built: {docs}")

print(f"install: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
