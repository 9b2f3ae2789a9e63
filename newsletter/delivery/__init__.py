"""Where an email leaves: the exactly-once send pipeline, SMTP, .eml outboxes, a local SMTP server."""
