"""Publishing built images: a small target interface, and AWS behind it."""
