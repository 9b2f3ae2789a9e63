"""`newsletter doctor`: what an operator checks before the first send (DNS, relay, URL, key)."""
