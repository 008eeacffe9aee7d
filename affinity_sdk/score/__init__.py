"""Score: the embeddable scorer, tier plans and score results."""
