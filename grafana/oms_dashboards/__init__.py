"""The Grafana dashboards as code: grafana/dashboards/*.json is this package's output.

Regenerate with `make dashboards` (python -m grafana.oms_dashboards); a test fails when
the committed JSON is not what this code renders. Needs grafana-foundation-sdk (the dev
extra), never the exporter at run time.
"""

from __future__ import annotations

import json
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from . import overview, project

OUTPUT = Path(__file__).resolve().parent.parent / "dashboards"


def render_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard, exactly as committed."""
    rendered = {}
    for builder in (overview.build(), project.build()):
        model = builder.build()
        text = json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False)
        rendered[f"{model.uid}.json"] = text + "\n"
    return rendered
