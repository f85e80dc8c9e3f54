"""The explainer component: AnchorTabular explanations computed against the deployed model over REST.

Start at ``component.LoanExplainer`` (the Seldon class); the rest is described in docs/explain.md.
"""
