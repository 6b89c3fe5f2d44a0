"""The shapes domain: scenes a program can render, caption and check (numpy, PIL, scikit-image)."""
