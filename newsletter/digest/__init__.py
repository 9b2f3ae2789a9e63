"""Where a digest enters: markdown parsed into papers (pure), TeX titles, and files into the store."""
