"""Reviewing records: the decisions and their rules (four eyes, edits, re-checks), the record
page, quotes on rendered PDF pages, publication notices, and the public static site."""
