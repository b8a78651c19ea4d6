"""The models room: embeddings from the graph, kept fresh as it grows.

One subpackage per method (its model, checkpoint and incremental refresh), neutral pieces beside:

* :mod:`models.spectral`: SpectralCF (the default), a training-free spectral filter;
* :mod:`models.lightgcn`: LightGCN, trained with BPR, and the hashed bases served before any checkpoint;
* :mod:`models.protocol`: what a method is to the refresh worker (:class:`~models.protocol.RefreshMethod`);
* :mod:`models.methods`: fit a method by name, load whichever a model dir holds, make its rounds;
* :mod:`models.model_dir`: the one on-disk model directory format, shared by every method;
* :mod:`models.refresh`: the refresh worker, which does the I/O around the methods;
* :mod:`models.cold_start`: embeddings from catalog text for items nobody has touched;
* :mod:`models.interactions`, :mod:`models.evaluation`: offline datasets and all-ranking metrics;
* :mod:`models.runtime`: torch device, CPU threads, fitted-state checks.
"""
