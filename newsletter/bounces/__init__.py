"""Bounces and complaints: reading the bounce mailbox and what each report does to a subscriber."""
