"""Transport: thin servicers, proto <-> domain converters, one error table, instrumentation."""
