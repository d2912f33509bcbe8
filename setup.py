"""Optional mypyc build of the engine's hot path.

``RAFTCORE_COMPILE=1 pip install --no-build-isolation .`` (with mypy installed)
compiles ``raftcore.engine`` and ``raftcore.quorum`` to C extensions; without
the variable the install is pure Python. Both builds run the same test suite
(``make test``); see docs/design/performance.md.
"""

import os

from setuptools import setup

COMPILED = [
    "raftcore/engine/" + m for m in sorted(os.listdir("raftcore/engine")) if m.endswith(".py")
]
COMPILED.append("raftcore/quorum.py")

ext_modules = []
if os.environ.get("RAFTCORE_COMPILE") == "1":
    from mypyc.build import mypycify

    ext_modules = mypycify(COMPILED)

setup(ext_modules=ext_modules)
