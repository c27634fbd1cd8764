"""broadcast-domain: the domain core of bulk e-mail broadcasts."""
