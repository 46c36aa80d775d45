"""Print the routing plan's JSON Schema: `python -m inferplane.compiler.plan_schema`.

`make schema` writes it to docs/plan.schema.json; a test fails when the
published file drifts from the models in plan.py.
"""

from __future__ import annotations

import json

from inferplane.compiler.plan import Plan


def plan_schema_json() -> str:
    schema = Plan.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(plan_schema_json(), end="")
