"""The gradient check: every hand-written backward against finite differences.

finite_differences.py holds the method (central differences in float64, their error bound, the pass rule);
table.py holds what is checked, one named row per branch of every backward in core/ and every model in models/.
`python -m minivae.gradcheck` runs the table.

Uses: core/ and models/. Nothing in core/ or models/ imports this.
"""
