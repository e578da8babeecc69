"""Transport: thin servicers, requests (proto -> domain), responses (one writer per message), the lean fast path, one error table, instrumentation."""
