"""Inductive GNN recommenders (GraphSAGE, GAT): users embedded from their items, refreshed over k-hop subgraphs."""
