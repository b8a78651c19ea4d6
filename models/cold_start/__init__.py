"""Cold start from text: the method (:mod:`.text`: MiniLM vectors, a ridge projection into the
embedding space) and its live pass over the store's catalog for the refresh worker (:mod:`.catalog`)."""
