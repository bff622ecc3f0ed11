"""Newsletter and syndication publisher for news sites."""
