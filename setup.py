"""Builds the native core (inn_mobile/csrc, plain C99) as a shared library loaded with ctypes.

It is a setuptools Extension only so that `pip install .` compiles it with no extra step; it has no
Python C-API code, so the same sources build for Android/iOS through csrc/CMakeLists.txt.
"""

from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SOURCES = sorted(glob("inn_mobile/csrc/*.c"))  # the core is every .c file of csrc/ (tests live in csrc/tests/)


class BuildCtypesLib(build_ext):
    """Plain shared library: no PyInit_ symbol is needed or exported."""

    def get_export_symbols(self, ext):
        return []


setup(
    ext_modules=[
        Extension(
            "inn_mobile._inn_core",
            sources=SOURCES,
            include_dirs=["inn_mobile/csrc"],
            extra_compile_args=["-std=c99", "-O3", "-ffp-contract=off", "-fvisibility=default"],
            libraries=["m"],
        )
    ],
    cmdclass={"build_ext": BuildCtypesLib},
)
