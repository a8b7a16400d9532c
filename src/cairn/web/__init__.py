"""HTTP adapters: the collector's `/v1` routes, the admin JSON API, pages, and error mapping."""
