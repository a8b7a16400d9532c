"""Tracking plans: naming rules, event schemas, the built-in event libraries and the linter
(docs/plans.md).

naming.py (the naming rules and `Violation`), words.py (their vocabulary), plan.py (plans:
loading, libraries, `CompiledPlan.check`), schema.py (the JSON Schema subset, compiled),
patterns.py (bounded regular expressions), document.py (YAML/JSON with line numbers), reader.py
(a plan file's shape), paths.py (`properties.products[0].price`), sources.py, pysource.py and
jssource.py (tracking calls in application source), lint.py (`cairn lint`), templates.py
(`cairn plans init`), cli.py (the commands). store.py keeps installed plans and violations.
"""
