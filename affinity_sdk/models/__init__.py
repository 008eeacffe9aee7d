"""Models: affinity, propensity and BG/NBD on top of the profile store."""
