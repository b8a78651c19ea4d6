"""LightGCN: the model (:mod:`.model`), BPR training (:mod:`.train`), its checkpoint
(:mod:`.checkpoint`), base rows for nodes it never saw (:mod:`.base_embeddings`), exact k-hop
propagation (:mod:`.propagation`) and its refresh rounds (:mod:`.refresh`)."""
