"""Write the dashboards' JSON (`--check`: only tell whether it is up to date)."""

from __future__ import annotations

import argparse
import sys

from . import OUTPUT, render_all


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana.oms_dashboards", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a file would change")
    args = parser.parse_args()
    stale = []
    for name, text in render_all().items():
        path = OUTPUT / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    unknown = sorted(p.name for p in OUTPUT.glob("*.json") if p.name not in render_all())
    for name in stale:
        print(f"{'out of date' if args.check else 'wrote'}: {OUTPUT / name}")
    for name in unknown:
        print(f"not generated (delete it or add it to the code): {OUTPUT / name}")
    return 1 if (args.check and stale) or unknown else 0


if __name__ == "__main__":
    sys.exit(main())
