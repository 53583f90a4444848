"""Runs a list of named checks for the interop scripts: prints each one's
outcome and "N ok, M failed", then exits 0 only if every check passed."""

import sys


def run_checks(checks):
    ok = failed = 0
    for name, check in checks:
        try:
            note = check()
            print(f"ok: {name}" + (f" ({note})" if note else ""))
            ok += 1
        except Exception as error:  # report every check, then fail
            print(f"FAILED: {name}: {type(error).__name__}: {error}")
            failed += 1
    print(f"{ok} ok, {failed} failed")
    sys.exit(0 if failed == 0 else 1)
