"""Generated protobuf and gRPC code for streamstats.v1 (do not edit; see scripts/gen_protos.py)."""
