"""Serving room: the in-memory embedding index, its loader, the gRPC server and its client.

Never imports faust (it runs beside the Faust worker, not inside it) nor torch: scoring is numpy.
"""

from proto import recommender_pb2

#: Full name of the gRPC service, as health checks and reflection know it.
SERVICE_NAME: str = recommender_pb2.DESCRIPTOR.services_by_name["Recommender"].full_name
#: Full name of the operator service (erasure), a service of its own so a proxy can leave it out.
ADMIN_SERVICE_NAME: str = recommender_pb2.DESCRIPTOR.services_by_name["Admin"].full_name
