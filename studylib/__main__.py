"""``python -m studylib``: the command line lives in :mod:`studylib.cli`."""

from studylib.cli.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main())
