"""Allow ``python -m oms_exporter``."""

from oms_exporter.cli import main

raise SystemExit(main())
