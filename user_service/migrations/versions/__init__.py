"""The user service's revisions, oldest first by number."""
