"""flite.wasm and its pinned sha256, shipped as package data (see gflite.flitewasm).

The directory also holds build.sh and the small C/header files it needs; those
are not installed.
"""
