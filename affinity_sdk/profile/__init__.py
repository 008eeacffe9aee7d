"""Profile: the one profile store and the views folded into it."""
