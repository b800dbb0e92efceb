"""The order service's revisions, oldest first by number."""
