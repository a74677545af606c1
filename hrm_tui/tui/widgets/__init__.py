"""The dashboard's widgets: one per file, nouns."""
