"""Generated protobuf and gRPC stubs (`make protos`).

The .proto files beside them are the source; never edit the stubs by hand.
"""
