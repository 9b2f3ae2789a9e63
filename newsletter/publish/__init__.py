"""The public side: RSS/Atom/JSON feed bytes and archive pages (pure), and the site folder build."""
