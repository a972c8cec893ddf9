from __future__ import annotations

from gflite.cli import main

if __name__ == "__main__":
    main()
