"""SpectralCF, the default method: the model (:mod:`.model`) on a truncated SVD (:mod:`.low_rank`),
its checkpoint and fit (:mod:`.checkpoint`) and its exact 1-hop refresh rounds (:mod:`.refresh`)."""
