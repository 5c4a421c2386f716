// Runs pytest inside Pyodide (CPython 3.14 compiled to WebAssembly) on this repository.
//
//   node tools/pyodide/run_pytest.mjs REPO SITE_PACKAGES [pytest arguments...]
//
// REPO is mounted at /repo and becomes the working directory; SITE_PACKAGES (the
// .venv's) is mounted at /sp and put on sys.path after it, so the pure-Python
// packages installed there (pytest, pymongo's bson, kafka-python, python-dotenv)
// are imported by Python 3.14; the C extensions in it are for 3.11 and are not
// loaded (pymongo falls back to pure Python). No bytecode is written into the
// repository. The exit code is pytest's. tests/unit/test_python_versions.py runs it.
import { loadPyodide } from "pyodide";

const [repo, sitePackages, ...pytestArgs] = process.argv.slice(2);
if (!repo || !sitePackages) {
  console.error("uso: node run_pytest.mjs REPO SITE_PACKAGES [argumentos de pytest...]");
  process.exit(2);
}
const pyodide = await loadPyodide();
// Byte for byte, so pytest's progress dots stay on one line.
pyodide.setStdout({ write: (bytes) => { process.stdout.write(bytes); return bytes.length; } });
pyodide.setStderr({ write: (bytes) => { process.stderr.write(bytes); return bytes.length; } });
for (const [hostPath, mountPoint] of [[repo, "/repo"], [sitePackages, "/sp"]]) {
  pyodide.FS.mkdirTree(mountPoint);
  pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: hostPath }, mountPoint);
}
pyodide.globals.set("PYTEST_ARGS", pyodide.toPy(pytestArgs));
const exitCode = pyodide.runPython(`
import os
import sys

sys.dont_write_bytecode = True
sys.path[:0] = ["/repo", "/sp"]
os.chdir("/repo")
print("Python", sys.version.split()[0], "on", sys.platform, flush=True)

import pytest

int(pytest.main(list(PYTEST_ARGS)))
`);
process.exit(Number(exitCode));
