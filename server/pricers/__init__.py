"""Pricers: stateless functions of (instruments, market, model) -> results, batch-first.

Each picks a kernel and returns diagnostics (forward, discount factor, time, vol used).
Named method + model + instrument, after QuantLib's pricing engines.
"""
