"""The finder: one condition language for search, live segments and triggers (docs/finder.md).

tree.py (the condition tree and its JSON form), text.py (the text form), values.py (what a test
means on one value), evaluate.py (the live evaluator), sql.py (the SQL compiler), search.py (ad-hoc
search), segments.py (live saved segments).
"""
