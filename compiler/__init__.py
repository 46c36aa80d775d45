"""The `.infer` compiler: parse, check and lower a spec into a routing plan.

Pure: no sockets, no processes. See README.md in this folder for the flow.
"""
