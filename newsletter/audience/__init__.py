"""Who reads what: subscriber records and filters (pure), keyword matching, and the CSV import."""
