"""Build pricegrid: generate the v1 contract, compile the Cython kernels, assemble the namespace.

The import root ``pricegrid`` is assembled here; nothing named ``server``, ``ext`` or
``clients`` is installed at top level:

    server/                      -> pricegrid.server
    ext/                         -> pricegrid.ext       (Cython kernels)
    clients/                     -> pricegrid.clients
    console/                     -> pricegrid.console   (the `pricegrid` command's dispatch)
    tools/                       -> pricegrid.tools     (`pricegrid bench`, built on the clients)
    proto/pricegrid/v1/*.proto   -> pricegrid.v1        (generated into build/generated)

Environment switches (read at build time, recorded in ``pricegrid.ext._build_info``):

    PRICEGRID_CPU_TARGET   ``native`` (default: compiled for the host CPU) or a portable
                           baseline for -march, e.g. ``x86-64-v3`` (the Dockerfile uses it)
    PRICEGRID_DEBUG=1      Cython bounds/wraparound/initialisation checks on, -O1 -g
    PRICEGRID_NO_OPENMP=1  build without OpenMP (batches then run on one thread)
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext as _build_ext
from setuptools.command.build_py import build_py as _build_py

ROOT = Path(__file__).resolve().parent
PROTO_ROOT = ROOT / "proto"
GENERATED = ROOT / "build" / "generated"
GENERATED_V1 = GENERATED / "pricegrid" / "v1"
FLAGS_STAMP = ROOT / "build" / "kernel-flags.json"

# One extension per model family: every ext/<family>.pyx becomes pricegrid.ext.<family>.
KERNELS = sorted(p.stem for p in (ROOT / "ext").glob("*.pyx"))


# --------------------------------------------------------------------------- contract
def generate_contract() -> None:
    """Run grpcio-tools' protoc over proto/pricegrid/v1 into build/generated/pricegrid/v1.

    Produces messages (``*_pb2.py``), their ``.pyi`` stubs, gRPC stubs (``*_pb2_grpc.py``)
    and, when mypy-protobuf is present, ``.pyi`` stubs for the gRPC modules too.
    """
    from grpc_tools import protoc  # build requirement (pyproject.toml)
    import grpc_tools

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "pricegrid" / "v1").glob("*.proto"))
    if not protos:
        raise SystemExit("no .proto files under proto/pricegrid/v1")
    stamp = GENERATED_V1 / ".stamp"
    helpers = list((PROTO_ROOT / "python" / "pricegrid" / "v1").glob("*.py"))
    newest = max([(PROTO_ROOT / p).stat().st_mtime for p in protos] + [h.stat().st_mtime for h in helpers])
    if stamp.exists() and stamp.stat().st_mtime >= newest and (GENERATED_V1 / "__init__.py").exists():
        return
    if GENERATED_V1.exists():
        shutil.rmtree(GENERATED_V1)
    GENERATED_V1.mkdir(parents=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={GENERATED}",
        f"--pyi_out={GENERATED}",
        f"--grpc_python_out={GENERATED}",
    ]
    plugin = shutil.which("protoc-gen-mypy_grpc") or _beside_python("protoc-gen-mypy_grpc")
    if plugin:
        args += [f"--plugin=protoc-gen-mypy_grpc={plugin}", f"--mypy_grpc_out={GENERATED}"]
    rc = protoc.main(args + protos)
    if rc != 0:
        raise SystemExit(f"protoc failed ({rc}) on {protos}")
    (GENERATED_V1 / "__init__.py").write_text(
        '"""pricegrid v1 contract: generated from proto/pricegrid/v1 at build time."""\n'
    )
    (GENERATED_V1 / "py.typed").write_text("")
    # hand-written contract helpers (e.g. the zero-copy column codec) join the generated code
    for helper in (PROTO_ROOT / "python" / "pricegrid" / "v1").glob("*.py"):
        shutil.copy2(helper, GENERATED_V1 / helper.name)
    stamp.write_text("")


def _beside_python(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None


# --------------------------------------------------------------------------- kernels
def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


CPU_TARGET = os.environ.get("PRICEGRID_CPU_TARGET", "native").strip() or "native"
DEBUG = _flag("PRICEGRID_DEBUG")
OPENMP = not _flag("PRICEGRID_NO_OPENMP")

COMPILE_ARGS = [
    "-O1" if DEBUG else "-O3",
    f"-march={CPU_TARGET}",
    # glibc's vector math (libmvec) is used for exp/log/erfc in `#pragma omp simd` loops only
    # when errno need not be set. No -ffast-math: it would delete the NaN checks.
    "-fno-math-errno",
    "-fopenmp-simd",
    "-fno-trapping-math",
    "-Wno-unused-function",
]
if DEBUG:
    COMPILE_ARGS.append("-g")
LINK_ARGS = ["-lm"]
if OPENMP:
    COMPILE_ARGS.append("-fopenmp")
    LINK_ARGS.append("-fopenmp")

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "nonecheck": DEBUG,
    "embedsignature": True,
}


#: Cython outside the kernels: the transport's wire codec for the front-office hot path, and
#: the risk client's streaming copy of reply columns into its result arrays
TRANSPORT_EXTENSIONS = {
    "pricegrid.server.rpc._codec": "server/rpc/_codec.pyx",
    "pricegrid.clients._copy": "clients/_copy.pyx",
}


def extensions() -> list[Extension]:
    return [
        Extension(name, [source], extra_compile_args=COMPILE_ARGS, extra_link_args=LINK_ARGS)
        for name, source in TRANSPORT_EXTENSIONS.items()
    ] + [
        Extension(
            f"pricegrid.ext.{name}",
            [f"ext/{name}.pyx"],
            include_dirs=["ext"],
            depends=[str(p) for p in Path("ext").glob("*.h")] + [str(p) for p in Path("ext").glob("*.pxd")],
            extra_compile_args=COMPILE_ARGS,
            extra_link_args=LINK_ARGS,
        )
        for name in KERNELS
    ]


#: gcc's -m<feature> -> the flag /proc/cpuinfo shows for it (the features a build may use)
_CPUINFO = {
    "sse": "sse", "sse2": "sse2", "sse3": "pni", "ssse3": "ssse3", "sse4.1": "sse4_1", "sse4.2": "sse4_2",
    "sse4a": "sse4a", "popcnt": "popcnt", "avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c",
    "bmi": "bmi1", "bmi2": "bmi2", "lzcnt": "abm", "movbe": "movbe", "adx": "adx", "aes": "aes",
    "pclmul": "pclmulqdq", "sha": "sha_ni", "xsave": "xsave", "xsavec": "xsavec", "xsaveopt": "xsaveopt",
    "xsaves": "xsaves", "avx512f": "avx512f", "avx512cd": "avx512cd", "avx512dq": "avx512dq",
    "avx512bw": "avx512bw", "avx512vl": "avx512vl", "avx512ifma": "avx512ifma", "avx512vbmi": "avx512vbmi",
    "avx512vbmi2": "avx512_vbmi2", "avx512vnni": "avx512_vnni", "avx512bitalg": "avx512_bitalg",
    "avx512vpopcntdq": "avx512_vpopcntdq", "avx512bf16": "avx512_bf16", "avx512fp16": "avx512_fp16",
}


def cpu_features() -> list:
    """The CPU features -march lets the compiler use, as /proc/cpuinfo names them (the
    server refuses to start on a CPU without them instead of dying of SIGILL); [] when the
    compiler does not say (not gcc, not x86)."""
    import subprocess

    cc = (sysconfig.get_config_var("CC") or "cc").split()
    try:
        out = subprocess.run([*cc, f"-march={CPU_TARGET}", "-Q", "--help=target"], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    enabled = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("-m") and parts[-1] == "[enabled]":
            enabled.add(parts[0][2:])
    return sorted(_CPUINFO[f] for f in enabled if f in _CPUINFO)


def build_info() -> dict:
    import Cython

    try:
        import numpy

        numpy_version = numpy.__version__
    except ImportError:  # numpy is not needed to compile the kernels
        numpy_version = ""
    return {
        "compiler": sysconfig.get_config_var("CC") or "cc",
        "compile_args": COMPILE_ARGS,
        "link_args": LINK_ARGS,
        "cpu_target": CPU_TARGET,
        "cpu_features": cpu_features(),
        "debug": DEBUG,
        "openmp": OPENMP,
        "cython_version": Cython.__version__,
        "numpy_version": numpy_version,
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "directives": DIRECTIVES,
    }


CYTHON_INCLUDE = ROOT / "build" / "cython-include"


def stage_pxd() -> None:
    """Copy ext/*.pxd to build/cython-include/pricegrid/ext/.

    Cython looks a module's .pxd up by its package path (pricegrid/ext/<family>.pxd), which
    the source tree does not have (ext/ is mapped onto pricegrid.ext). With this folder on
    the include path, a kernel finds its own .pxd and `cimport pricegrid.ext.<family>`
    works between families, as it does against an installed package.
    """
    target = CYTHON_INCLUDE / "pricegrid" / "ext"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for pxd in (ROOT / "ext").glob("*.pxd"):
        shutil.copy2(pxd, target / pxd.name)


class build_ext(_build_ext):
    """Cythonize into build/cython (no .c in the source tree) and record the flags used."""

    def finalize_options(self):
        from Cython.Build import cythonize

        stage_pxd()
        # A change of PRICEGRID_* flags must rebuild everything, though no source changed.
        flags = json.dumps({"compile": COMPILE_ARGS, "link": LINK_ARGS, "directives": DIRECTIVES}, sort_keys=True)
        changed = not FLAGS_STAMP.exists() or FLAGS_STAMP.read_text() != flags
        if changed:
            self.force = True
        self._flags = flags
        self.distribution.ext_modules = cythonize(
            self.distribution.ext_modules,
            compiler_directives=DIRECTIVES,
            build_dir="build/cython",
            force=changed,
            # staged pricegrid/ext/*.pxd (cimport pricegrid.ext.<family>) and ext/ (cimport pg_<name>)
            include_path=[str(CYTHON_INCLUDE), "ext"],
            quiet=True,
        )
        super().finalize_options()

    def run(self):
        super().run()
        FLAGS_STAMP.parent.mkdir(parents=True, exist_ok=True)
        FLAGS_STAMP.write_text(self._flags)
        target = Path(self.build_lib) / "pricegrid" / "ext" / "_build_info.py"
        if self.inplace:
            target = ROOT / "ext" / "_build_info.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            '"""Flags the kernels were compiled with (written by setup.py at build time)."""\n'
            f"BUILD_INFO = {build_info()!r}\n"
        )


class build_py(_build_py):
    def run(self):
        generate_contract()
        super().run()
        self._remove_stale_modules()

    def _remove_stale_modules(self) -> None:
        """Drop .py files a previous build left in build/lib whose source is gone: a module
        deleted from the tree must not come back in the wheel (the pricers package imports
        every module it holds)."""
        root = Path(self.build_lib) / "pricegrid"
        if not root.exists():
            return
        current = {Path(p).resolve() for p in self.get_outputs(include_bytecode=False)}
        for path in root.rglob("*.py"):
            if path.resolve() not in current and path.name != "_build_info.py":
                path.unlink()


generate_contract()  # setuptools lists pricegrid.v1 below, so its folder must exist first

PACKAGE_DIR = {
    "pricegrid.server": "server",
    "pricegrid.ext": "ext",
    "pricegrid.clients": "clients",
    "pricegrid.console": "console",
    "pricegrid.tools": "tools",
    "pricegrid.v1": "build/generated/pricegrid/v1",
}
PACKAGES = (
    ["pricegrid.server"]
    + [f"pricegrid.server.{p}" for p in find_packages("server")]
    + ["pricegrid.ext", "pricegrid.clients", "pricegrid.console", "pricegrid.tools", "pricegrid.v1"]
    + [f"pricegrid.clients.{p}" for p in find_packages("clients")]
)

setup(
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={
        "pricegrid.v1": ["*.pyi", "py.typed"],
        "pricegrid.ext": ["*.pyi", "*.pxd", "*.h"],
        "pricegrid.server": ["py.typed"],
        "pricegrid.clients": ["py.typed"],
    },
    ext_modules=extensions(),
    cmdclass={"build_ext": build_ext, "build_py": build_py},
    zip_safe=False,
)
