"""The payment service's revisions, oldest first by number."""
