"""Self-paced balance learning (SPBL; Yang et al., IEEE TNNLS 2020).

``curriculum`` holds the per-pace arithmetic on arrays, ``classifier`` the weighted feature SVM,
``pipeline`` the paces themselves (CNN training through the engine). A config turns it on with an
``spbl:`` block; ``longtail.train`` then runs :func:`longtail.spbl.pipeline.run`.
"""
